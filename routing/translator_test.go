package routing

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zalando/skipper/eskip"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// renderFull is renderTable plus what it leaves out: Table.Served and each
// route's origin fields.
func renderFull(t Table) string {
	var b strings.Builder
	b.WriteString(renderTable(t))
	fmt.Fprintf(&b, "// Served: %v\n", t.Served)
	for _, r := range t.Routes {
		meta := *r
		meta.Eskip, meta.Gateway = nil, nil
		fmt.Fprintf(&b, "// %s: %+v\n", r.Eskip.Id, meta)
		if r.Gateway != nil {
			fmt.Fprintf(&b, "//   gateway origin: %+v\n", *r.Gateway)
		}
	}
	return b.String()
}

// One Translator through every fixture, forwards and back: whatever it
// remembers of the previous snapshot, each table is the golden one.
func TestTranslatorGolden(t *testing.T) {
	paths := fixturePaths(t)
	tr := NewTranslator()
	check := func(path string) {
		t.Helper()
		s, o := loadFixture(t, path)
		want, err := os.ReadFile(strings.TrimSuffix(path, ".yaml") + ".eskip")
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // first seen, then unchanged
			if got := renderTable(tr.Translate(s, o)); got != string(want) {
				t.Fatalf("%s: the Translator's output differs from the golden file:\n%s", fixtureName(path), lineDiff(string(want), got))
			}
		}
		if got, want := renderFull(tr.Translate(s, o)), renderFull(Translate(s, o)); got != want {
			t.Fatalf("%s: the Translator differs from Translate:\n%s", fixtureName(path), lineDiff(want, got))
		}
	}
	for _, p := range paths {
		check(p)
	}
	for _, p := range slices.Backward(paths) {
		check(p)
	}
}

// cluster is the mutable state of TestTranslatorAgreesWithTranslate: the
// objects by name, each replaced (a new pointer) on every change, as an
// informer cache does.
type cluster struct {
	rng       *rand.Rand
	classes   map[string]*networkingv1.IngressClass
	ingresses map[string]*networkingv1.Ingress
	services  map[string]*Service
	slices    map[string]*EndpointSlice
	held      map[string]*networkingv1.Ingress
	// dupIngress and dupService, when set, are a second object with the
	// name of an existing one (DuplicateObject).
	dupIngress *networkingv1.Ingress
	dupService *Service
	opts       Options
	// secrets are TLS Secrets "t0" and "t1" (Ingress spec.tls), each a
	// copy of one of keyPairs.
	secrets  map[string]*corev1.Secret
	keyPairs []*corev1.Secret
}

var (
	clusterHosts     = []string{"a.com", "b.a.com", "*.a.com", "", "c.com", "bad_host.com", "A.com."}
	clusterPaths     = []string{"/", "/x", "/x/", "/x/y", "", "bad", "/y"}
	clusterPathTypes = []networkingv1.PathType{networkingv1.PathTypeExact, networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific, "Regex"}
	clusterServices  = []string{"s0", "s1", "s2", "s3", "missing"}
	clusterAddresses = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1", "10.0.9.9", "169.254.169.254"}
)

func newCluster(seed uint64) *cluster {
	c := &cluster{
		rng:       rand.New(rand.NewPCG(seed, seed+1)),
		classes:   map[string]*networkingv1.IngressClass{"bulkhead": ingressClass("bulkhead", true)},
		ingresses: map[string]*networkingv1.Ingress{},
		services:  map[string]*Service{},
		slices:    map[string]*EndpointSlice{},
		held:      map[string]*networkingv1.Ingress{},
		secrets:   map[string]*corev1.Secret{},
	}
	// The Secrets of the ingress_tls fixture: two good key pairs, a
	// mismatched one and one of another type.
	data, err := os.ReadFile("testdata/ingress_tls.yaml")
	if err != nil {
		panic(err)
	}
	fixture, _, err := parseFixture(data, false)
	if err != nil {
		panic(err)
	}
	c.keyPairs = fixture.Secrets
	for range 6 {
		c.putIngress(c.randomIngress(fmt.Sprintf("i%d", c.rng.IntN(12))))
	}
	for _, name := range clusterServices[:4] {
		c.putService(c.randomService(name))
		c.putSlice(c.randomSlice(name, name+"-1"))
	}
	return c
}

func (c *cluster) pick(list []string) string { return list[c.rng.IntN(len(list))] }

func (c *cluster) randomBackend() networkingv1.IngressBackend {
	port := networkingv1.ServiceBackendPort{Number: 80}
	switch c.rng.IntN(4) {
	case 0:
		port = networkingv1.ServiceBackendPort{Name: "http"}
	case 1:
		port = networkingv1.ServiceBackendPort{Number: 81}
	}
	if c.rng.IntN(20) == 0 {
		return networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{Kind: "Bucket", Name: "b"}}
	}
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: c.pick(clusterServices), Port: port}}
}

func (c *cluster) randomIngress(name string) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{}
	ing.Namespace, ing.Name = "default", name
	// Few distinct creation times: ties are decided by name.
	ing.CreationTimestamp = metav1.NewTime(time.Date(2024, 1, 1, c.rng.IntN(3), 0, 0, 0, time.UTC))
	switch c.rng.IntN(6) {
	case 0:
		ing.Spec.IngressClassName = ptr("other")
	case 1:
		ing.Spec.IngressClassName = ptr("bulkhead")
	case 2:
		ing.Annotations = map[string]string{legacyClassAnnotation: "bulkhead"}
	}
	if c.rng.IntN(4) == 0 {
		b := c.randomBackend()
		ing.Spec.DefaultBackend = &b
	}
	if c.rng.IntN(4) == 0 {
		if ing.Annotations == nil {
			ing.Annotations = map[string]string{}
		}
		ing.Annotations[c.pick([]string{AnnotationLoadBalancer, AnnotationConnectTimeout, "bulkhead.io/unknown"})] =
			c.pick([]string{"round-robin", "2s", "bad"})
	}
	if c.rng.IntN(3) == 0 {
		ing.Spec.TLS = append(ing.Spec.TLS, networkingv1.IngressTLS{SecretName: c.pick([]string{"t0", "t1", "missing", ""}),
			Hosts: []string{c.pick(clusterHosts), c.pick(clusterHosts)}})
		if c.rng.IntN(2) == 0 {
			if ing.Annotations == nil {
				ing.Annotations = map[string]string{}
			}
			ing.Annotations[AnnotationSSLRedirect] = c.pick([]string{"true", "true", "false", "yes"})
		}
	}
	for range c.rng.IntN(3) {
		rule := networkingv1.IngressRule{Host: c.pick(clusterHosts),
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
		for range 1 + c.rng.IntN(3) {
			rule.HTTP.Paths = append(rule.HTTP.Paths, networkingv1.HTTPIngressPath{
				Path: c.pick(clusterPaths), PathType: ptr(clusterPathTypes[c.rng.IntN(len(clusterPathTypes))]),
				Backend: c.randomBackend(),
			})
		}
		ing.Spec.Rules = append(ing.Spec.Rules, rule)
	}
	return ing
}

func (c *cluster) randomService(name string) *Service {
	ports := []corev1.ServicePort{servicePort("http", 80)}
	switch c.rng.IntN(5) {
	case 0:
		ports = append(ports, servicePort("admin", 81))
	case 1:
		ports = []corev1.ServicePort{servicePort("http", 81)}
	case 2:
		ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolUDP}}
	}
	svc := service("default", name, ports...)
	if c.rng.IntN(10) == 0 {
		svc.Type = corev1.ServiceTypeExternalName
	}
	return svc
}

func (c *cluster) randomSlice(svc, name string) *EndpointSlice {
	var addrs []string
	for range c.rng.IntN(3) {
		addrs = append(addrs, c.pick(clusterAddresses))
	}
	s := endpointSlice("default", svc, name, int32(8080+c.rng.IntN(2)), addrs...)
	for i := range s.Endpoints {
		switch c.rng.IntN(4) {
		case 0:
			s.Endpoints[i].Ready, s.Endpoints[i].Serving, s.Endpoints[i].Terminating = false, true, true
		case 1:
			s.Endpoints[i].Ready, s.Endpoints[i].Serving = false, false
		}
	}
	return s
}

func (c *cluster) putIngress(ing *networkingv1.Ingress)      { c.ingresses[ing.Name] = ing }
func (c *cluster) putService(svc *Service)                   { c.services[svc.Name] = svc }
func (c *cluster) putSlice(s *EndpointSlice)                 { c.slices[s.Name] = s }
func (c *cluster) anyIngress() (*networkingv1.Ingress, bool) { return anyOf(c.rng, c.ingresses) }

func anyOf[T any](rng *rand.Rand, m map[string]*T) (*T, bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, false
	}
	slices.Sort(keys)
	return m[keys[rng.IntN(len(keys))]], true
}

// step makes one random change and says which.
func (c *cluster) step() string { return c.stepCase(c.rng.IntN(20)) }

// stepCase makes a random change of one kind (see step).
func (c *cluster) stepCase(kind int) string {
	switch kind {
	case 0, 1:
		name := fmt.Sprintf("i%d", c.rng.IntN(12))
		c.putIngress(c.randomIngress(name))
		return "ingress created or replaced: " + name
	case 2, 3:
		if ing, ok := c.anyIngress(); ok {
			// The same Ingress with one path changed, or no change but
			// a new object (a status update).
			next := ing.DeepCopy()
			if len(next.Spec.Rules) > 0 && len(next.Spec.Rules[0].HTTP.Paths) > 0 && c.rng.IntN(2) == 0 {
				next.Spec.Rules[0].HTTP.Paths[0].Path = c.pick(clusterPaths)
			}
			c.putIngress(next)
			return "ingress changed: " + ing.Name
		}
	case 4:
		if ing, ok := c.anyIngress(); ok {
			delete(c.ingresses, ing.Name)
			return "ingress deleted: " + ing.Name
		}
	case 5:
		if ing, ok := c.anyIngress(); ok {
			next := ing.DeepCopy()
			next.Spec.IngressClassName = ptr(c.pick([]string{"bulkhead", "other", ""}))
			c.putIngress(next)
			return "ingress class changed: " + ing.Name
		}
	case 6:
		cl := ingressClass("bulkhead", c.rng.IntN(2) == 0)
		if c.rng.IntN(4) == 0 {
			cl.Spec.Controller = "example.com/other"
		}
		c.classes["bulkhead"] = cl
		return "class bulkhead replaced"
	case 7:
		if _, ok := c.classes["other"]; ok {
			delete(c.classes, "other")
		} else {
			other := ingressClass("other", false)
			c.classes["other"] = other
		}
		return "class other toggled"
	case 8, 9:
		name := c.pick(clusterServices)
		c.putService(c.randomService(name))
		return "service created or changed: " + name
	case 10:
		name := c.pick(clusterServices)
		delete(c.services, name)
		return "service deleted: " + name
	case 11, 12, 13:
		svc := c.pick(clusterServices)
		name := fmt.Sprintf("%s-%d", svc, 1+c.rng.IntN(2))
		if c.rng.IntN(4) == 0 {
			delete(c.slices, name)
			return "slice deleted: " + name
		}
		c.putSlice(c.randomSlice(svc, name))
		return "slice created or changed: " + name
	case 14:
		// The guard holds a copy of an Ingress (live or gone), or lets
		// one go.
		if c.rng.IntN(2) == 0 && len(c.held) > 0 {
			h, _ := anyOf(c.rng, c.held)
			delete(c.held, h.Name)
			return "held released: " + h.Name
		}
		h := c.randomIngress(fmt.Sprintf("i%d", c.rng.IntN(14)))
		if ing, ok := c.anyIngress(); ok && c.rng.IntN(2) == 0 {
			h = ing
		}
		c.held[h.Name] = h
		return "held: " + h.Name
	case 15:
		c.dupIngress = nil
		if ing, ok := c.anyIngress(); ok && c.rng.IntN(2) == 0 {
			c.dupIngress = ing.DeepCopy()
			return "ingress duplicated: " + ing.Name
		}
		return "no duplicate ingress"
	case 16:
		c.dupService = nil
		if svc, ok := anyOf(c.rng, c.services); ok && c.rng.IntN(2) == 0 {
			c.dupService = ptr(*svc)
			return "service duplicated: " + svc.Name
		}
		return "no duplicate service"
	case 17:
		switch c.rng.IntN(4) {
		case 0:
			c.opts = Options{}
		case 1:
			c.opts = Options{NodeAddresses: []netip.Addr{netip.MustParseAddr("10.0.9.9")}}
		case 2:
			c.opts = Options{SelfAddresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}
		case 3:
			c.opts = Options{ControllerName: DefaultControllerName}
		}
		return fmt.Sprintf("options: %+v", c.opts)
	case 18, 19:
		// A TLS Secret created, replaced (renewed, broken, of another
		// type) or deleted; sometimes the default certificate.
		name := c.pick([]string{"t0", "t1"})
		if c.rng.IntN(4) == 0 {
			delete(c.secrets, name)
			return "secret deleted: " + name
		}
		sec := c.keyPairs[c.rng.IntN(len(c.keyPairs))].DeepCopy()
		sec.Namespace, sec.Name = "default", name
		c.secrets[name] = sec
		if c.rng.IntN(4) == 0 {
			c.opts.DefaultCertificate = objectKey("default", c.pick([]string{"t0", "t1", "missing"}))
		}
		return "secret created or replaced: " + name
	}
	return "nothing"
}

// snapshot lists the objects in a random order.
func (c *cluster) snapshot() *Snapshot {
	s := &Snapshot{
		IngressClasses: values(c.classes),
		Ingresses:      values(c.ingresses),
		Services:       values(c.services),
		EndpointSlices: values(c.slices),
		HeldIngresses:  values(c.held),
		Secrets:        values(c.secrets),
	}
	if c.dupIngress != nil {
		s.Ingresses = append(s.Ingresses, c.dupIngress)
	}
	if c.dupService != nil {
		s.Services = append(s.Services, c.dupService)
	}
	return shuffledSnapshot(s, c.rng)
}

func values[T any](m map[string]*T) []*T {
	out := make([]*T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestTranslatorAgreesWithTranslate applies random changes of every kind
// to a small cluster (where conflicts, duplicates, missing Services and
// refused endpoints are frequent) and, after each, compares the
// Translator's table with a fresh Translate of the same snapshot. The
// tables it returned before must not have changed meanwhile.
func TestTranslatorAgreesWithTranslate(t *testing.T) {
	seeds, steps := 40, 150
	if testing.Short() {
		seeds = 8
	}
	for seed := range uint64(seeds) {
		c := newCluster(seed)
		tr := NewTranslator()
		var history []string
		var previous []Table
		var rendered []string
		var last *Snapshot
		for step := range steps {
			history = append(history, c.step())
			s := c.snapshot()
			if last != nil && step%2 == 0 {
				// As the watcher lists: a kind that did not change keeps
				// its list, in the same order.
				s.Services = keepIfSameSet(last.Services, s.Services)
				s.EndpointSlices = keepIfSameSet(last.EndpointSlices, s.EndpointSlices)
				s.Ingresses = keepIfSameSet(last.Ingresses, s.Ingresses)
				s.Secrets = keepIfSameSet(last.Secrets, s.Secrets)
			}
			last = s
			got := tr.Translate(s, c.opts)
			want := renderFull(Translate(s, c.opts))
			if g := renderFull(got); g != want {
				t.Fatalf("seed %d step %d: the Translator differs from Translate after:\n  %s\n%s",
					seed, step, strings.Join(history, "\n  "), lineDiff(want, g))
			}
			previous, rendered = append(previous, got), append(rendered, want)
		}
		for i, p := range previous {
			if renderFull(p) != rendered[i] {
				t.Fatalf("seed %d: the table of step %d changed after it was returned", seed, i)
			}
		}
	}
}

// TestTranslatorIncrementalAgreesWithTranslate is
// TestTranslatorAgreesWithTranslate with the lists kept in a stable order,
// as the data client's watcher keeps them (a changed object in the place
// of the old one, a new one last, a removed one's place taken by the last
// one), and with mostly Ingress and EndpointSlice changes: most calls then
// take the incremental path (incremental.go), and each table must still be
// Translate's. Between two calls come one to eight changes, as a debounced
// rebuild sees them: several Ingresses claiming the same host and path
// change together. The tables returned before must not have changed.
func TestTranslatorIncrementalAgreesWithTranslate(t *testing.T) {
	seeds, steps := 60, 200
	if testing.Short() {
		seeds = 10
	}
	calls, incremental, batched := 0, 0, 0
	for seed := range uint64(seeds) {
		c := newCluster(seed + 1000)
		tr := NewTranslator()
		order := map[string][]string{}
		var history []string
		var previous []Table
		var rendered []string
		var gateways []*gatewayv1.Gateway
		gatewayClasses := []*gatewayv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"},
			Spec: gatewayv1.GatewayClassSpec{ControllerName: DefaultGatewayControllerName}}}
		for step := range steps {
			n := 1
			switch k := c.rng.IntN(10); {
			case k >= 8:
				n = 4 + c.rng.IntN(5)
			case k >= 6:
				n = 2 + c.rng.IntN(2)
			}
			for range n {
				switch k := c.rng.IntN(20); {
				case k == 0:
					// Gateway API objects without routes (the incremental
					// path's, which makes their problems again): none, one
					// Gateway, or one listed twice (DuplicateObject).
					gateways = gateways[:0]
					for range c.rng.IntN(3) {
						gateways = append(gateways, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
							Spec: gatewayv1.GatewaySpec{GatewayClassName: "bulkhead", Listeners: []gatewayv1.Listener{
								{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}}}})
					}
					history = append(history, fmt.Sprintf("gateways: %d", len(gateways)))
				case k < 11:
					history = append(history, c.stepCase(c.rng.IntN(6))) // Ingresses
				case k < 18:
					history = append(history, c.stepCase(11+c.rng.IntN(3))) // EndpointSlices
				default:
					history = append(history, c.step())
				}
			}
			history = append(history, "-- translated")
			s := &Snapshot{
				IngressClasses: stableValues(order, "classes", c.classes),
				Ingresses:      stableValues(order, "ingresses", c.ingresses),
				Services:       stableValues(order, "services", c.services),
				EndpointSlices: stableValues(order, "slices", c.slices),
				HeldIngresses:  stableValues(order, "held", c.held),
				Secrets:        stableValues(order, "secrets", c.secrets),
				GatewayClasses: gatewayClasses,
				Gateways:       slices.Clone(gateways),
			}
			if c.dupIngress != nil {
				s.Ingresses = append(s.Ingresses, c.dupIngress)
			}
			if c.dupService != nil {
				s.Services = append(s.Services, c.dupService)
			}
			before := tr.incr.calls
			table := tr.Translate(s, c.opts)
			got := renderFull(table)
			took := tr.incr.calls > before
			if took {
				incremental++
				if n > 1 {
					batched++
				}
			}
			calls++
			want := renderFull(Translate(s, c.opts))
			if got != want {
				t.Fatalf("seed %d step %d (incremental: %v): the Translator differs from Translate after:\n  %s\n%s",
					seed, step, took, strings.Join(history, "\n  "), lineDiff(want, got))
			}
			previous, rendered = append(previous, table), append(rendered, want)
		}
		for i, p := range previous {
			if renderFull(p) != rendered[i] {
				t.Fatalf("seed %d: the table of step %d changed after it was returned", seed, i)
			}
		}
	}
	// The incremental path must answer a good share of these calls, or
	// this test checks little of it (the rest are the full path's: held
	// Ingresses, which random steps keep for a while, and the other kinds).
	if incremental*3 < calls || batched*10 < calls {
		t.Fatalf("only %d of %d calls took the incremental path (%d of them after several changes)", incremental, calls, batched)
	}
	t.Logf("%d of %d calls took the incremental path, %d of them after several changes", incremental, calls, batched)
}

// stableValues lists m's values in the order order[kind] keeps: a key
// still there keeps its place, a new key goes last, a gone key's place is
// taken by the last key.
func stableValues[T any](order map[string][]string, kind string, m map[string]*T) []*T {
	keys := order[kind]
	for i := 0; i < len(keys); {
		if _, ok := m[keys[i]]; ok {
			i++
			continue
		}
		keys[i] = keys[len(keys)-1]
		keys = keys[:len(keys)-1]
	}
	var added []string
	for k := range m {
		if !slices.Contains(keys, k) {
			added = append(added, k)
		}
	}
	slices.Sort(added)
	keys = append(keys, added...)
	order[kind] = keys
	out := make([]*T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// keepIfSameSet returns prev when it holds the same objects as next, in
// any order; else next.
func keepIfSameSet[T any](prev, next []*T) []*T {
	if len(prev) != len(next) {
		return next
	}
	set := map[*T]int{}
	for _, o := range prev {
		set[o]++
	}
	for _, o := range next {
		if set[o]--; set[o] < 0 {
			return next
		}
	}
	return prev
}

// routePointers maps route IDs to their *eskip.Route.
func routePointers(t Table) map[string]*eskip.Route {
	m := map[string]*eskip.Route{}
	for _, r := range t.Routes {
		m[r.Eskip.Id] = r.Eskip
	}
	return m
}

// changedRoutes lists the routes of next that are not pointer-identical to
// prev's of the same ID, and the IDs gone.
func changedRoutes(prev, next Table) (changed []string, gone []string) {
	before, after := routePointers(prev), routePointers(next)
	for id, r := range after {
		if before[id] != r {
			changed = append(changed, id)
		}
	}
	for id := range before {
		if _, ok := after[id]; !ok {
			gone = append(gone, id)
		}
	}
	slices.Sort(changed)
	slices.Sort(gone)
	return changed, gone
}

// An unchanged snapshot gives the same routes, pointer for pointer; a
// change of one Ingress re-emits only its routes and the routes whose
// conflict winner changed; an Ingress replaced by an equal one, or a
// Service by an equal one, re-emits nothing.
func TestTranslatorReusesRoutes(t *testing.T) {
	s := benchSnapshot(50)
	// app-00001 is younger than app-00000: a rule of app-00001 for
	// app-00000's host and path loses, until app-00000 is gone.
	rival := s.Ingresses[1].DeepCopy()
	rival.Spec.Rules = append(rival.Spec.Rules, *s.Ingresses[0].Spec.Rules[0].DeepCopy())
	s.Ingresses[1] = rival
	tr := NewTranslator()
	first := tr.Translate(s, Options{})
	if len(first.Routes) != 50 {
		t.Fatalf("%d routes", len(first.Routes))
	}

	second := tr.Translate(shuffledSnapshot(s, rand.New(rand.NewPCG(1, 1))), Options{})
	if changed, gone := changedRoutes(first, second); len(changed)+len(gone) > 0 {
		t.Fatalf("unchanged snapshot: routes %v re-emitted, %v gone", changed, gone)
	}
	if &first.Routes[0] != &second.Routes[0] || &first.Backends[0] != &second.Backends[0] {
		t.Error("unchanged snapshot: the routes or backends are not the previous table's")
	}

	// Equal objects at new addresses (a status update, a resync).
	s.Ingresses[7] = s.Ingresses[7].DeepCopy()
	s.Services[7] = ptr(*s.Services[7])
	third := tr.Translate(s, Options{})
	if changed, gone := changedRoutes(second, third); len(changed)+len(gone) > 0 {
		t.Fatalf("equal objects replaced: routes %v re-emitted, %v gone", changed, gone)
	}

	// One Ingress's path changes: its route, and nothing else.
	changedIng := s.Ingresses[5].DeepCopy()
	changedIng.Spec.Rules[0].HTTP.Paths[0].Path = "/v2"
	s.Ingresses[5] = changedIng
	fourth := tr.Translate(s, Options{})
	changed, gone := changedRoutes(third, fourth)
	if len(changed) != 1 || !strings.HasPrefix(changed[0], "ing__team_05__app_00005__app_00005_example_com__v2__") ||
		len(gone) != 1 || !strings.HasPrefix(gone[0], "ing__team_05__app_00005__") {
		t.Fatalf("one path changed: re-emitted %v, gone %v", changed, gone)
	}

	// The conflict winner leaves: its route goes, the loser's appears.
	s.Ingresses = slices.Delete(s.Ingresses, 0, 1)
	fifth := tr.Translate(s, Options{})
	changed, gone = changedRoutes(fourth, fifth)
	if len(changed) != 1 || !strings.HasPrefix(changed[0], "ing__team_01__app_00001__app_00000_example_com__") ||
		len(gone) != 1 || !strings.HasPrefix(gone[0], "ing__team_00__app_00000__") {
		t.Fatalf("conflict winner deleted: re-emitted %v, gone %v", changed, gone)
	}
	if got, want := renderFull(fifth), renderFull(Translate(s, Options{})); got != want {
		t.Fatalf("differs from Translate:\n%s", lineDiff(want, got))
	}
}

// Endpoints are chosen again only for backends whose Service or slices
// changed; the others keep their lists.
func TestTranslatorReusesEndpoints(t *testing.T) {
	s := benchSnapshot(20)
	tr := NewTranslator()
	first := tr.Translate(s, Options{})
	s.EndpointSlices[3] = endpointSlice("team-03", "app-00003", "app-00003-x1", 8080, "10.9.9.9")
	second := tr.Translate(s, Options{})
	for i := range first.Backends {
		same := &first.Backends[i].Endpoints[0] == &second.Backends[i].Endpoints[0]
		if isThree := first.Backends[i].Key.Service == "app-00003"; same == isThree {
			t.Errorf("%s: endpoints reused %v", first.Backends[i].Key, same)
		}
	}
	b, _ := second.Backend(BackendKey{Namespace: "team-03", Service: "app-00003", Port: 80})
	if len(b.Endpoints) != 1 || b.Endpoints[0].Address != "10.9.9.9:8080" {
		t.Fatalf("app-00003: %+v", b)
	}
	// New node addresses refuse other endpoints: every backend is chosen
	// again.
	third := tr.Translate(s, Options{NodeAddresses: []netip.Addr{netip.MustParseAddr("10.9.9.9")}})
	if got, want := renderFull(third), renderFull(Translate(s, Options{NodeAddresses: []netip.Addr{netip.MustParseAddr("10.9.9.9")}})); got != want {
		t.Fatalf("after an options change:\n%s", lineDiff(want, got))
	}
}

// The IDs of colliding routes are made unique on copies: the Translator's
// routes keep their IDs.
func TestRenameDuplicateIDsCopies(t *testing.T) {
	a, b := &eskip.Route{Id: "x"}, &eskip.Route{Id: "x"}
	routes := []*Route{{Eskip: a, Path: "/1"}, {Eskip: b, Path: "/2"}}
	if !renameDuplicateIDs(routes) {
		t.Fatal("nothing renamed")
	}
	if routes[1].Eskip.Id != "x_2" || b.Id != "x" || routes[1].Eskip == b || routes[0].Eskip != a {
		t.Fatalf("got %q (%p), original %q", routes[1].Eskip.Id, routes[1].Eskip, b.Id)
	}
}

func BenchmarkTranslator(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		s := benchSnapshot(n)
		b.Run(fmt.Sprintf("ingresses=%d/unchanged", n), func(b *testing.B) {
			tr := NewTranslator()
			tr.Translate(s, Options{})
			b.ReportAllocs()
			for b.Loop() {
				tr.Translate(s, Options{})
			}
		})
		b.Run(fmt.Sprintf("ingresses=%d/one-ingress-changed", n), func(b *testing.B) {
			// Two versions of one Ingress, alternating: each call sees a
			// new object with another path.
			at := n / 2
			versions := [2]*networkingv1.Ingress{s.Ingresses[at], s.Ingresses[at].DeepCopy()}
			versions[1].Spec.Rules[0].HTTP.Paths[0].Path = "/v2"
			snap := *s
			snap.Ingresses = slices.Clone(s.Ingresses)
			tr := NewTranslator()
			tr.Translate(&snap, Options{})
			b.ReportAllocs()
			i := 0
			var table Table
			for b.Loop() {
				i++
				snap.Ingresses[at] = versions[i%2]
				table = tr.Translate(&snap, Options{})
			}
			if len(table.Routes) != n || len(table.Problems) != 0 {
				b.Fatalf("%d routes, %d problems", len(table.Routes), len(table.Problems))
			}
		})
	}
}
