package routing

import (
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func BenchmarkTranslate1k(b *testing.B)  { benchmarkTranslate(b, 1_000) }
func BenchmarkTranslate10k(b *testing.B) { benchmarkTranslate(b, 10_000) }

func benchmarkTranslate(b *testing.B, ingresses int) {
	s := benchSnapshot(ingresses)
	b.ReportAllocs()
	var table Table
	for b.Loop() {
		table = Translate(s, Options{})
	}
	if len(table.Routes) != ingresses || len(table.Problems) != 0 {
		b.Fatalf("%d routes, %d problems", len(table.Routes), len(table.Problems))
	}
}

// BenchmarkIncrementalChange10k is the cost of one changed Ingress among
// 10,000 (issue 13): each op replaces one Ingress by a copy with another
// path, as an informer does, and translates; the incremental path answers.
func BenchmarkIncrementalChange10k(b *testing.B) {
	const n = 10_000
	s := benchSnapshot(n)
	snap := *s
	snap.Ingresses = slices.Clone(s.Ingresses)
	at := n / 2
	tr := NewTranslator()
	tr.Translate(&snap, Options{})
	calls := tr.IncrementalCalls()
	b.ReportAllocs()
	i := 0
	var table Table
	for b.Loop() {
		i++
		ing := s.Ingresses[at].DeepCopy()
		ing.Spec.Rules[0].HTTP.Paths[0].Path = fmt.Sprintf("/v%d", i%2)
		snap.Ingresses[at] = ing
		table = tr.Translate(&snap, Options{})
	}
	if len(table.Routes) != n || len(table.Problems) != 0 {
		b.Fatalf("%d routes, %d problems", len(table.Routes), len(table.Problems))
	}
	if tr.IncrementalCalls()-calls != i {
		b.Fatalf("%d of %d calls took the incremental path", tr.IncrementalCalls()-calls, i)
	}
}

// BenchmarkTranslatorRetained10k reports the heap a Translator keeps (its
// memory of 10,000 Ingresses and the table it shares with its caller),
// after a full call and one incremental change, as retained-MB; the
// snapshot is not counted. The time per op is meaningless.
func BenchmarkTranslatorRetained10k(b *testing.B) {
	const n = 10_000
	s := benchSnapshot(n)
	snap := *s
	snap.Ingresses = slices.Clone(s.Ingresses)
	var before, after runtime.MemStats
	var total float64
	for b.Loop() {
		snap.Ingresses[n/2] = s.Ingresses[n/2]
		runtime.GC()
		runtime.ReadMemStats(&before)
		tr := NewTranslator()
		tr.Translate(&snap, Options{})
		ing := s.Ingresses[n/2].DeepCopy()
		ing.Spec.Rules[0].HTTP.Paths[0].Path = "/v2"
		snap.Ingresses[n/2] = ing
		tr.Translate(&snap, Options{})
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(tr)
		total += float64(after.HeapAlloc) - float64(before.HeapAlloc)
	}
	b.ReportMetric(total/float64(b.N)/(1<<20), "retained-MB")
}

// benchSnapshot is a cluster of n Ingresses, each with its own host, and a
// Service with an EndpointSlice of 3 endpoints behind each.
func benchSnapshot(n int) *Snapshot {
	s := &Snapshot{IngressClasses: []*networkingv1.IngressClass{ingressClass("bulkhead", true)}}
	for i := range n {
		namespace, name := fmt.Sprintf("team-%02d", i%50), fmt.Sprintf("app-%05d", i)
		s.Services = append(s.Services, service(namespace, name, servicePort("http", 80)))
		s.EndpointSlices = append(s.EndpointSlices, endpointSlice(namespace, name, name+"-x1", 8080,
			fmt.Sprintf("10.%d.%d.1", i/250, i%250),
			fmt.Sprintf("10.%d.%d.2", i/250, i%250),
			fmt.Sprintf("10.%d.%d.3", i/250, i%250)))

		ing := &networkingv1.Ingress{}
		ing.Namespace, ing.Name = namespace, name
		ing.CreationTimestamp = metav1.Unix(int64(1_700_000_000+i), 0)
		ing.Spec.Rules = []networkingv1.IngressRule{{
			Host: name + ".example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: ptr(networkingv1.PathTypePrefix),
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
						Name: name, Port: networkingv1.ServiceBackendPort{Name: "http"},
					}},
				}},
			}},
		}}
		s.Ingresses = append(s.Ingresses, ing)
	}
	return s
}

// BenchmarkLookup is the per-request routing cost as the proxy pays it:
// PrepareRequest and skipper's lookup, in a table of n exact hosts, each
// with Prefix "/", plus a few host-less rules. It must not grow with n:
// the host is found by the path tree, not by trying routes one by one.
//
//   - exact, exact-root: a request for one of the hosts (the root path is
//     where, before host dispatch, every host's route met in one leaf);
//   - hostless: a host with no rules of its own, falling through to a
//     host-less rule;
//   - miss: a host with no rules and a path nobody serves (404).
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		r := newRouter(b, Translate(lookupBenchSnapshot(n), Options{}))
		for _, bc := range []struct{ name, host, path, want string }{
			{"exact", fmt.Sprintf("app-%05d.example.com", n/2), "/api/v1/items", fmt.Sprintf("app-%05d.example.com", n/2)},
			{"exact-root", fmt.Sprintf("app-%05d.example.com", n/2), "/", fmt.Sprintf("app-%05d.example.com", n/2)},
			{"hostless", "other.example.org", "/static/app.js", ""},
			{"miss", "other.example.org", "/nothing", "404"},
		} {
			b.Run(fmt.Sprintf("hosts=%d/%s", n, bc.name), func(b *testing.B) {
				req := &http.Request{Method: http.MethodGet, Host: bc.host, URL: &url.URL{}, Header: http.Header{}}
				req.URL.Path = bc.path
				got := "404"
				if chosen := r.route(req); chosen != nil {
					got = r.byID[chosen.Id].Host
				}
				if got != bc.want {
					b.Fatalf("%s%s went to host %q, want %q", bc.host, bc.path, got, bc.want)
				}
				b.ReportAllocs()
				for b.Loop() {
					req.URL.Path = bc.path
					PrepareRequest(req)
					r.routing.Route(req)
				}
			})
		}
	}
}

// lookupBenchSnapshot is benchSnapshot plus one Ingress of host-less rules.
func lookupBenchSnapshot(n int) *Snapshot {
	s := benchSnapshot(n)
	ing := &networkingv1.Ingress{}
	ing.Namespace, ing.Name = "default", "hostless"
	ing.Spec.Rules = []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}}
	for _, p := range []struct {
		path string
		typ  networkingv1.PathType
	}{{"/healthz", networkingv1.PathTypeExact}, {"/static", networkingv1.PathTypePrefix}, {"/.well-known/acme", networkingv1.PathTypePrefix}} {
		ing.Spec.Rules[0].HTTP.Paths = append(ing.Spec.Rules[0].HTTP.Paths, networkingv1.HTTPIngressPath{
			Path: p.path, PathType: ptr(p.typ), Backend: echoBackend(),
		})
	}
	s.Ingresses = append(s.Ingresses, ing)
	s.Services = append(s.Services, service("default", "echo", servicePort("http", 80)))
	s.EndpointSlices = append(s.EndpointSlices, endpointSlice("default", "echo", "echo-1", 8080, "10.0.0.1"))
	return s
}
