package upstream

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
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

// choose is the bulkheadBackend filter's balancing decision: it returns
// an index into state (a backend's endpoint set), by power of two choices
// on least in-flight or round robin (next is the route's round-robin
// counter), both weighted by slow start (slowStart in nanoseconds, 0:
// off), among the endpoints whose breaker lets traffic in unless that
// leaves half or fewer (the panic threshold). state must not be empty.
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
