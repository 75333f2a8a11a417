package routing

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Service is what translation reads of a Kubernetes Service: its identity,
// type and ports. Every router caches every Service of the cluster, so
// it holds this and not the API object: a decoded Service, even with its
// metadata stripped, is about 600 bytes before its ports; this is 112.
type Service struct {
	Namespace       string
	Name            string
	ResourceVersion string
	// UID is kept only where it is read: of default/kubernetes, which
	// tells one cluster from another.
	UID   types.UID
	Type  corev1.ServiceType
	Ports []corev1.ServicePort
}

// NewService is the Service translation reads of s. The ports are s's,
// not a copy.
func NewService(s *corev1.Service) *Service {
	out := &Service{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion,
		Type: s.Spec.Type, Ports: s.Spec.Ports}
	if s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes" {
		out.UID = s.UID
	}
	return out
}

// MarshalJSON writes the Service as the API object it was made from
// (less what translation does not read), so a Snapshot written out reads
// as Kubernetes objects and reads back (UnmarshalJSON).
func (s *Service) MarshalJSON() ([]byte, error) {
	out := corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion, UID: s.UID},
		Spec:       corev1.ServiceSpec{Type: s.Type, Ports: s.Ports}}
	return json.Marshal(&out)
}

// UnmarshalJSON reads a Kubernetes Service (JSON, or YAML made JSON).
func (s *Service) UnmarshalJSON(data []byte) error {
	var in corev1.Service
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*s = *NewService(&in)
	return nil
}

// GetObjectMeta lets client-go's caches key, index and version a Service
// (meta.Accessor): the informers store this form, not the API object.
func (s *Service) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion, UID: s.UID}
}

// EndpointSlice is what translation reads of a Kubernetes EndpointSlice:
// its identity, the Service it belongs to (its kubernetes.io/service-name
// label), its address type and ports, and of each endpoint the first
// address (the one consumers may use) and its conditions. A cluster has
// tens of thousands of endpoints and every router caches them all: a
// decoded slice, even with its metadata stripped, is over 1,000 bytes
// for three endpoints; this is about 250.
type EndpointSlice struct {
	Namespace       string
	Name            string
	ResourceVersion string
	// Service is the slice's kubernetes.io/service-name label; a slice
	// without one belongs to no Service.
	Service string
	// ChangeTriggerTime is its endpoints.kubernetes.io/last-change-trigger-time
	// annotation: when the Pod or Service change behind it happened. Read
	// only to measure how long a change takes to go live.
	ChangeTriggerTime string
	AddressType       discoveryv1.AddressType
	Ports             []discoveryv1.EndpointPort
	Endpoints         []SliceEndpoint
}

// SliceEndpoint is one endpoint of an EndpointSlice: its first address
// (empty for none) and its conditions read the Kubernetes way (ready
// unset means ready, serving unset means as ready, terminating unset
// means not terminating).
type SliceEndpoint struct {
	Address     string
	Ready       bool
	Serving     bool
	Terminating bool
}

// NewEndpointSlice is the EndpointSlice translation reads of s. The ports
// are s's, not a copy.
func NewEndpointSlice(s *discoveryv1.EndpointSlice) *EndpointSlice {
	out := &EndpointSlice{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion,
		Service: s.Labels[discoveryv1.LabelServiceName], ChangeTriggerTime: s.Annotations[corev1.EndpointsLastChangeTriggerTime],
		AddressType: s.AddressType, Ports: s.Ports}
	if len(s.Endpoints) > 0 {
		out.Endpoints = make([]SliceEndpoint, len(s.Endpoints))
		for i, ep := range s.Endpoints {
			out.Endpoints[i] = NewSliceEndpoint(ep)
		}
	}
	return out
}

// NewSliceEndpoint is what translation reads of one endpoint.
func NewSliceEndpoint(ep discoveryv1.Endpoint) SliceEndpoint {
	var out SliceEndpoint
	if len(ep.Addresses) > 0 {
		out.Address = ep.Addresses[0]
	}
	c := ep.Conditions
	out.Ready = c.Ready == nil || *c.Ready
	out.Serving = out.Ready
	if c.Serving != nil {
		out.Serving = *c.Serving
	}
	out.Terminating = c.Terminating != nil && *c.Terminating
	return out
}

// MarshalJSON writes the slice as the API object it was made from (less
// what translation does not read), so a Snapshot written out reads as
// Kubernetes objects and reads back (UnmarshalJSON).
func (s *EndpointSlice) MarshalJSON() ([]byte, error) {
	out := discoveryv1.EndpointSlice{TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta:  metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion},
		AddressType: s.AddressType, Ports: s.Ports, Endpoints: make([]discoveryv1.Endpoint, len(s.Endpoints))}
	if s.Service != "" {
		out.Labels = map[string]string{discoveryv1.LabelServiceName: s.Service}
	}
	if s.ChangeTriggerTime != "" {
		out.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: s.ChangeTriggerTime}
	}
	for i, ep := range s.Endpoints {
		e := &out.Endpoints[i]
		if ep.Address != "" {
			e.Addresses = []string{ep.Address}
		}
		e.Conditions = discoveryv1.EndpointConditions{Ready: &ep.Ready, Serving: &ep.Serving, Terminating: &ep.Terminating}
	}
	return json.Marshal(&out)
}

// UnmarshalJSON reads a Kubernetes EndpointSlice (JSON, or YAML made JSON).
func (s *EndpointSlice) UnmarshalJSON(data []byte) error {
	var in discoveryv1.EndpointSlice
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*s = *NewEndpointSlice(&in)
	return nil
}

// GetObjectMeta lets client-go's caches key, index and version a slice
// (meta.Accessor): the informers store this form, not the API object.
func (s *EndpointSlice) GetObjectMeta() metav1.Object {
	m := &metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion}
	if s.Service != "" {
		m.Labels = map[string]string{discoveryv1.LabelServiceName: s.Service}
	}
	return m
}

// GetNamespace and GetName name the Service as the API object's do.
func (s *Service) GetNamespace() string { return s.Namespace }
func (s *Service) GetName() string      { return s.Name }

// GetNamespace and GetName name the slice as the API object's do.
func (s *EndpointSlice) GetNamespace() string { return s.Namespace }
func (s *EndpointSlice) GetName() string      { return s.Name }
