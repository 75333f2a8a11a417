package dataclient

import (
	"slices"
	"strings"
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"

	"github.com/bulkhead-router/bulkhead/routing"
)

// lean is the informers' transform: it keeps of each object what bulkhead
// reads and drops the rest before the object is cached, since the caches
// hold every Service and EndpointSlice of the cluster on every node
// (managedFields alone are often half an object). Kept: of an Ingress,
// its identity, generation, creation time, the annotations translation
// reads, spec and status (see leanIngress; the status writer reads the
// status). Services and EndpointSlices are cached as routing.Service and
// routing.EndpointSlice, what translation reads of them (a quarter and a
// third of the heap the stripped API objects took: BenchmarkLeanCache).
// A test shows translation gives the same table from lean objects as from
// whole ones.
func lean(obj any) (any, error) {
	switch o := obj.(type) {
	case cache.DeletedFinalStateUnknown:
		return o, nil
	case *networkingv1.Ingress:
		return leanIngress(o), nil
	case *corev1.Service:
		return leanService(o), nil
	case *discoveryv1.EndpointSlice:
		return leanSlice(o), nil
	case *routing.Service, *routing.EndpointSlice:
		return o, nil // already lean: a transform may see an object twice
	case *corev1.Namespace:
		return leanNamespace(o), nil
	case *corev1.Secret:
		return leanSecret(o), nil
	}
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				delete(a, corev1.LastAppliedConfigAnnotation)
			}
		}
	}
	return obj, nil
}

// leanMeta is the identity of an object: what caches, tombstones and the
// deletion guard need. The UID only where it is read (leanService). The
// namespace is interned: a cluster has few, and each decoded object has
// its own copy.
func leanMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: intern(m.Namespace), Name: m.Name, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp}
}

// intern returns the canonical copy of s, shared by every object that
// holds an equal string and let go when none does.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// leanIngress keeps what translation, the watcher and the status writer
// read of an Ingress: its identity, generation and creation time, the
// annotations translation reads (bulkhead.io/ ones, the legacy class
// annotation), its spec and its status. Labels, other controllers'
// annotations (Helm's, cert-manager's, kubectl's last-applied copy),
// owner references, finalizers and the UID go: in a cluster they are
// often more than the rest of the object. statusOnly compares the kept
// annotations, so a change of another controller's annotation costs no
// rebuild.
func leanIngress(ing *networkingv1.Ingress) *networkingv1.Ingress {
	out := &networkingv1.Ingress{TypeMeta: ing.TypeMeta, ObjectMeta: leanMeta(ing.ObjectMeta), Spec: ing.Spec, Status: ing.Status}
	out.Annotations = routedAnnotations(ing.Annotations)
	return out
}

// routedAnnotations are the annotations of an Ingress that translation
// reads (those with routing.AnnotationPrefix, unknown ones included since
// they are reported, and routing.LegacyClassAnnotation; routing says
// there are no others, and TestLeanObjectsTranslateTheSame fails if a
// routed annotation is dropped): a as it is when
// that is all it holds, else a smaller copy; nil for none.
func routedAnnotations(a map[string]string) map[string]string {
	routed := func(k string) bool {
		return strings.HasPrefix(k, routing.AnnotationPrefix) || k == routing.LegacyClassAnnotation
	}
	n := 0
	for k := range a {
		if routed(k) {
			n++
		}
	}
	switch {
	case n == 0:
		return nil
	case n == len(a):
		return a
	}
	out := make(map[string]string, n)
	for k, v := range a {
		if routed(k) {
			out[k] = v
		}
	}
	return out
}

// leanService is what translation reads of a Service (routing.Service),
// its namespace interned and its ports shared with other Services that
// have the same.
func leanService(s *corev1.Service) *routing.Service {
	out := routing.NewService(s)
	out.Namespace = intern(out.Namespace)
	out.Type = corev1.ServiceType(intern(string(out.Type)))
	out.Ports = sharedServicePorts(out.Ports)
	return out
}

// leanSlice is what translation and the watcher read of an EndpointSlice
// (routing.EndpointSlice), its namespace and address type interned and
// its ports shared with other slices that have the same.
func leanSlice(s *discoveryv1.EndpointSlice) *routing.EndpointSlice {
	out := routing.NewEndpointSlice(s)
	out.Namespace = intern(out.Namespace)
	out.AddressType = discoveryv1.AddressType(intern(string(out.AddressType)))
	out.Ports = sharedPorts(out.Ports)
	return out
}

// sharedPorts returns a list equal to ports that slices with the same
// ports share: most of a cluster's slices have one of a few port lists
// ("http" 8080 TCP), and each decoded slice has its own, with a pointer
// for each field of each port (about 90 bytes a one-port list). Lists of
// more than four ports, and new lists once maxSharedPortLists are known,
// are kept as they are.
func sharedPorts(ports []discoveryv1.EndpointPort) []discoveryv1.EndpointPort {
	var key endpointPortsKey
	if len(ports) == 0 || len(ports) > len(key.ports) {
		return ports
	}
	key.n = len(ports)
	for i, p := range ports {
		k := &key.ports[i]
		if p.Name != nil {
			k.name, k.set = *p.Name, k.set|1
		}
		if p.Protocol != nil {
			k.protocol, k.set = string(*p.Protocol), k.set|2
		}
		if p.Port != nil {
			k.port, k.set = *p.Port, k.set|4
		}
		if p.AppProtocol != nil {
			k.appProtocol, k.set = *p.AppProtocol, k.set|8
		}
	}
	portLists.mu.Lock()
	defer portLists.mu.Unlock()
	if shared, ok := portLists.m[key]; ok {
		return shared
	}
	if len(portLists.m) >= maxSharedPortLists {
		return ports
	}
	if portLists.m == nil {
		portLists.m = map[endpointPortsKey][]discoveryv1.EndpointPort{}
	}
	ports = slices.Clip(ports)
	portLists.m[key] = ports
	return ports
}

// sharedServicePorts is what leanService keeps of a Service's ports
// (AppProtocol says how the pods are reached: h2c, TLS), as a list that
// Services with the same ports share, as sharedPorts does for slices.
func sharedServicePorts(ports []corev1.ServicePort) []corev1.ServicePort {
	if len(ports) == 0 {
		return nil
	}
	var key servicePortsKey
	shareable := len(ports) <= len(key.ports)
	if shareable {
		key.n = len(ports)
		for i, p := range ports {
			k := &key.ports[i]
			k.name, k.protocol, k.port, k.target = p.Name, p.Protocol, p.Port, p.TargetPort
			if p.AppProtocol != nil {
				k.appProtocol, k.hasAppProtocol = *p.AppProtocol, true
			}
		}
		portLists.mu.Lock()
		shared, ok := portLists.services[key]
		portLists.mu.Unlock()
		if ok {
			return shared
		}
	}
	out := make([]corev1.ServicePort, len(ports))
	for i, p := range ports {
		p := corev1.ServicePort{Name: intern(p.Name), Protocol: corev1.Protocol(intern(string(p.Protocol))), Port: p.Port,
			TargetPort: p.TargetPort, AppProtocol: p.AppProtocol}
		p.TargetPort.StrVal = intern(p.TargetPort.StrVal)
		out[i] = p
	}
	if shareable {
		portLists.mu.Lock()
		if len(portLists.services) < maxSharedPortLists {
			if portLists.services == nil {
				portLists.services = map[servicePortsKey][]corev1.ServicePort{}
			}
			portLists.services[key] = out
		}
		portLists.mu.Unlock()
	}
	return out
}

// maxSharedPortLists bounds the port lists of each kind kept for sharing
// (sharedPorts, sharedServicePorts): they are kept for the life of the
// process.
const maxSharedPortLists = 1024

// portLists are the port lists slices share, by value.
var portLists struct {
	mu       sync.Mutex
	m        map[endpointPortsKey][]discoveryv1.EndpointPort
	services map[servicePortsKey][]corev1.ServicePort
}

type servicePortsKey struct {
	n     int
	ports [4]struct {
		name, appProtocol string
		hasAppProtocol    bool
		protocol          corev1.Protocol
		port              int32
		target            intstr.IntOrString
	}
}

type endpointPortsKey struct {
	n     int
	ports [4]struct {
		name, protocol, appProtocol string
		port                        int32
		set                         uint8 // which of the fields are given
	}
}
