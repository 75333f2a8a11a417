package routing

import (
	"flag"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/zalando/skipper/eskip"
	"k8s.io/apimachinery/pkg/api/equality"
)

var update = flag.Bool("update", false, "rewrite the golden .eskip files from the current output")

// TestGolden translates every testdata/<case>.yaml and compares with
// testdata/<case>.eskip.
func TestGolden(t *testing.T) {
	for _, path := range fixturePaths(t) {
		t.Run(fixtureName(path), func(t *testing.T) {
			s, o := loadFixture(t, path)
			got := renderTable(Translate(s, o))
			golden := strings.TrimSuffix(path, ".yaml") + ".eskip"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run with -update to accept):\n%s", golden, lineDiff(string(want), got))
			}
			if _, err := eskip.Parse(string(want)); err != nil {
				t.Errorf("%s does not parse as eskip: %v", golden, err)
			}
		})
	}
}

// lineDiff shows the lines only in want (-) and only in got (+); enough to
// see what changed in a sorted golden file.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range wl {
		if !slices.Contains(gl, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range gl {
		if !slices.Contains(wl, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "(same lines, different order)"
	}
	return b.String()
}

// Same objects in any order: byte-identical output.
func TestTranslateIsOrderIndependent(t *testing.T) {
	for _, path := range fixturePaths(t) {
		t.Run(fixtureName(path), func(t *testing.T) {
			s, o := loadFixture(t, path)
			want := renderTable(Translate(s, o))
			rng := rand.New(rand.NewPCG(1, 2))
			for range 20 {
				shuffled := shuffledSnapshot(s, rng)
				if got := renderTable(Translate(shuffled, o)); got != want {
					t.Fatalf("output depends on input order:\n%s", lineDiff(want, got))
				}
			}
		})
	}
}

func shuffledSnapshot(s *Snapshot, rng *rand.Rand) *Snapshot {
	c := &Snapshot{
		IngressClasses: slices.Clone(s.IngressClasses),
		Ingresses:      slices.Clone(s.Ingresses),
		Services:       slices.Clone(s.Services),
		EndpointSlices: slices.Clone(s.EndpointSlices),
		HeldIngresses:  slices.Clone(s.HeldIngresses),

		GatewayClasses:  slices.Clone(s.GatewayClasses),
		Gateways:        slices.Clone(s.Gateways),
		HTTPRoutes:      slices.Clone(s.HTTPRoutes),
		GRPCRoutes:      slices.Clone(s.GRPCRoutes),
		ReferenceGrants: slices.Clone(s.ReferenceGrants),
		Namespaces:      slices.Clone(s.Namespaces),
		Secrets:         slices.Clone(s.Secrets),
	}
	shuffle(rng, c.Secrets)
	shuffle(rng, c.GatewayClasses)
	shuffle(rng, c.Gateways)
	shuffle(rng, c.HTTPRoutes)
	shuffle(rng, c.GRPCRoutes)
	shuffle(rng, c.ReferenceGrants)
	shuffle(rng, c.Namespaces)
	shuffle(rng, c.IngressClasses)
	shuffle(rng, c.Ingresses)
	shuffle(rng, c.Services)
	shuffle(rng, c.EndpointSlices)
	shuffle(rng, c.HeldIngresses)
	return c
}

func shuffle[T any](rng *rand.Rand, s []T) {
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
}

// Objects come from informer caches: Translate must not write to them.
func TestTranslateDoesNotMutateInput(t *testing.T) {
	for _, path := range fixturePaths(t) {
		t.Run(fixtureName(path), func(t *testing.T) {
			s, o := loadFixture(t, path)
			pristine, _ := loadFixture(t, path)
			table := Translate(s, o)
			if !equality.Semantic.DeepEqual(s, pristine) {
				t.Fatal("Translate modified its input")
			}
			// And the output must not alias the input: editing it leaves
			// the snapshot alone.
			for _, be := range table.Backends {
				for i := range be.Endpoints {
					be.Endpoints[i].Address = "mutated"
				}
			}
			for _, c := range table.Certificates {
				c.Cert[0], c.Key[0] = 'x', 'x'
			}
			if !equality.Semantic.DeepEqual(s, pristine) {
				t.Fatal("the table aliases the input")
			}
		})
	}
}

// ResolveEndpoints is what an endpoint change costs the data client; it
// must agree with Translate on every backend of every fixture, given only
// that backend's Service and the snapshot's slices (others' included,
// which it must ignore).
func TestResolveEndpointsAgreesWithTranslate(t *testing.T) {
	for _, path := range fixturePaths(t) {
		t.Run(fixtureName(path), func(t *testing.T) {
			s, o := loadFixture(t, path)
			table := Translate(s, o)
			for _, want := range table.Backends {
				var svc *Service
				for _, c := range s.Services {
					if c != nil && c.Namespace == want.Key.Namespace && c.Name == want.Key.Service {
						svc = c
					}
				}
				got, problems := ResolveEndpoints(want.Key, svc, s.EndpointSlices, o)
				if !equality.Semantic.DeepEqual(got, want) {
					t.Errorf("%s: ResolveEndpoints %+v, Translate %+v", want.Key, got, want)
				}
				for _, p := range problems {
					if !slices.Contains(table.Problems, p) {
						t.Errorf("%s: problem %+v not in the table's", want.Key, p)
					}
				}
			}
		})
	}
}
