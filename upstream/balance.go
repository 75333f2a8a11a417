package upstream

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/zalando/skipper/routing"
)

// Balancing algorithms, by the names skipper's eskip uses for them.
const (
	// AlgorithmRoundRobin takes the endpoints in turn.
	AlgorithmRoundRobin = "roundRobin"
	// AlgorithmLeastInFlight is power of two choices: two endpoints drawn
	// at random, the one with fewer attempts in flight wins (skipper calls
	// it powerOfRandomNChoices). The default.
	AlgorithmLeastInFlight = "powerOfRandomNChoices"
)

// slowStartFloor is the share of its full weight a brand-new endpoint
// starts with: enough to warm it up, small enough not to hurt while cold.
const slowStartFloor = 0.1

// balancer is the LB algorithm of one legacy LB route: round robin or power of two
// choices on least in-flight, both weighted by slow start and steering
// around open breakers (unless more than half of the endpoints are
// unavailable: the panic threshold). It holds the route's endpoint state
// in route order, so a choice reads atomics, never a map or a lock.
type balancer struct {
	leastInFlight bool
	eps           []*breaker // parallel to the route's LBEndpoints
	slowStart     int64      // nanoseconds; 0: off
	b             *Breakers
	next          atomic.Uint64
	now           func() time.Time
}

func newBalancer(r *routing.Route, b *Breakers, leastInFlight bool, slowStart time.Duration) *balancer {
	bl := &balancer{leastInFlight: leastInFlight, b: b, slowStart: int64(slowStart), now: b.now}
	bl.eps = make([]*breaker, len(r.LBEndpoints))
	for i := range r.LBEndpoints {
		bl.eps[i] = b.get(r.LBEndpoints[i].Host)
	}
	bl.next.Store(rand.Uint64())
	return bl
}

// Apply implements routing.LBAlgorithm.
func (bl *balancer) Apply(ctx *routing.LBContext) routing.LBEndpoint {
	eps := ctx.LBEndpoints
	n := len(eps)
	if n == 1 {
		return eps[0]
	}
	state := bl.eps
	if len(state) != n { // skipper narrowed the list: look endpoints up
		state = make([]*breaker, n)
		for i := range eps {
			state[i] = bl.b.get(eps[i].Host)
		}
	}
	return eps[choose(bl.b, state, bl.leastInFlight, bl.slowStart, &bl.next, bl.now)]
}

// choose is the balancing decision, shared by the bulkheadBackend filter
// and the legacy LB-route balancer: it returns an index into state, by
// power of two choices on least in-flight or round robin (next is the
// round-robin counter), both weighted by slow start (slowStart in
// nanoseconds, 0: off), among the endpoints whose breaker lets traffic
// in unless that leaves half or fewer (the panic threshold). state must
// not be empty.
func choose(b *Breakers, state []*breaker, leastInFlight bool, slowStart int64, next *atomic.Uint64, nowFn func() time.Time) int {
	n := len(state)
	if n == 1 {
		return 0
	}
	// Candidates: every endpoint, or those whose breaker lets traffic in,
	// unless that leaves half or fewer (panic threshold).
	var small [64]int
	cand := small[:0]
	if b.notClosed.Load() > 0 {
		for i, s := range state {
			if b.available(s) {
				cand = append(cand, i)
			}
		}
		if len(cand)*2 < n || len(cand) == 0 {
			cand = cand[:0]
		}
	}
	var now int64
	if slowStart > 0 {
		now = nowFn().UnixNano()
	}
	if leastInFlight {
		return twoChoices(state, cand, n, slowStart, now)
	}
	return roundRobin(state, cand, n, slowStart, now, next)
}

// at maps a candidate position to an endpoint index: with no candidate
// list every endpoint is a candidate.
func at(cand []int, k int) int {
	if len(cand) == 0 {
		return k
	}
	return cand[k]
}

func twoChoices(state []*breaker, cand []int, n int, slowStart, now int64) int {
	m := n
	if len(cand) > 0 {
		m = len(cand)
	}
	if m == 1 {
		return at(cand, 0)
	}
	x := rand.IntN(m)
	y := rand.IntN(m - 1)
	if y >= x {
		y++
	}
	i, j := at(cand, x), at(cand, y)
	// Slow start: a warming endpoint takes part in the draw with a
	// probability equal to its weight; otherwise the other one wins.
	if slowStart > 0 {
		wi, wj := weight(state[i], slowStart, now), weight(state[j], slowStart, now)
		ini := wi >= 1 || rand.Float64() < wi
		inj := wj >= 1 || rand.Float64() < wj
		switch {
		case ini && !inj:
			return i
		case inj && !ini:
			return j
		case !ini && !inj:
			if wj > wi {
				return j
			}
			return i
		}
	}
	// Fewer attempts in flight wins; a tie goes to the first draw, which
	// is random.
	if state[j].inflight.Load() < state[i].inflight.Load() {
		return j
	}
	return i
}

func roundRobin(state []*breaker, cand []int, n int, slowStart, now int64, next *atomic.Uint64) int {
	m := n
	if len(cand) > 0 {
		m = len(cand)
	}
	start := next.Add(1)
	if slowStart == 0 {
		return at(cand, int(start%uint64(m)))
	}
	// Slow start: an endpoint still warming up accepts its turn with a
	// probability equal to its weight; a refused turn passes to the next.
	for k := 0; k < m; k++ {
		i := at(cand, int((start+uint64(k))%uint64(m)))
		if w := weight(state[i], slowStart, now); w >= 1 || rand.Float64() < w {
			return i
		}
	}
	return at(cand, int(start%uint64(m)))
}

// weight is 1, or during slow start the share of traffic the endpoint is
// ready for: linear from slowStartFloor to 1.
func weight(s *breaker, slowStart, now int64) float64 {
	if slowStart == 0 || s.added == 0 {
		return 1
	}
	age := now - s.added
	if age >= slowStart {
		return 1
	}
	if age < 0 {
		age = 0
	}
	return slowStartFloor + (1-slowStartFloor)*float64(age)/float64(slowStart)
}
