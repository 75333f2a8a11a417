package routing

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// spliceInPlace must give what splice gives, for any drops and additions,
// whatever the list's spare capacity.
func TestSpliceInPlaceAgreesWithSplice(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for round := range 20_000 {
		n := rng.IntN(40)
		list := make([]int, n, n+rng.IntN(8))
		for i := range list {
			list[i] = 1000 + i
		}
		var drop []int
		for i := range n {
			if rng.IntN(6) == 0 {
				drop = append(drop, i)
			}
		}
		add := make([]int, rng.IntN(12))
		at := make([]int, len(add))
		for k := range add {
			add[k], at[k] = -k-1, rng.IntN(n+1)
		}
		slices.Sort(at)
		want := splice(list, drop, at, add)
		before := slices.Clone(list)
		got := spliceInPlace(list, drop, at, add)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: list %v, drop %v, add %v at %v:\ngot  %v\nwant %v", round, before, drop, add, at, got, want)
		}
		if spare := got[len(got):cap(got)]; len(got) < n && slices.ContainsFunc(spare[:min(len(spare), n-len(got))], func(x int) bool { return x != 0 }) {
			t.Fatalf("round %d: stale elements left past the end: %v", round, spare)
		}
	}
}
