package upstream

import (
	"sync/atomic"
	"time"
)

// BudgetConfig is a Finagle/Linkerd style retry budget per backend:
// over the sliding Window, retries may not exceed Ratio x requests plus
// MinPerSecond x Window.
type BudgetConfig struct {
	Ratio        float64       // default 0.2
	MinPerSecond float64       // default 3
	Window       time.Duration // default 10s, whole seconds
}

func (c *BudgetConfig) defaults() {
	if c.Ratio <= 0 {
		c.Ratio = 0.2
	}
	if c.MinPerSecond < 0 {
		c.MinPerSecond = 0
	} else if c.MinPerSecond == 0 {
		c.MinPerSecond = 3
	}
	if c.Window < time.Second {
		c.Window = 10 * time.Second
	}
}

// budget keeps one bucket per second of the window. Updates are atomic and
// approximate at bucket roll-over (a few increments may be lost); no lock.
type budget struct {
	cfg     BudgetConfig
	buckets []bucket
	now     func() time.Time
}

type bucket struct {
	sec     atomic.Int64
	reqs    atomic.Int64
	retries atomic.Int64
}

func newBudget(cfg BudgetConfig, now func() time.Time) *budget {
	n := int(cfg.Window / time.Second)
	return &budget{cfg: cfg, buckets: make([]bucket, n), now: now}
}

func (b *budget) current() (*bucket, int64) {
	sec := b.now().Unix()
	bk := &b.buckets[sec%int64(len(b.buckets))]
	if old := bk.sec.Load(); old != sec && bk.sec.CompareAndSwap(old, sec) {
		bk.reqs.Store(0)
		bk.retries.Store(0)
	}
	return bk, sec
}

// request deposits one client request.
func (b *budget) request() {
	bk, _ := b.current()
	bk.reqs.Add(1)
}

// withdraw takes one retry from the budget; false when exhausted.
func (b *budget) withdraw() bool {
	bk, sec := b.current()
	var reqs, retries int64
	oldest := sec - int64(len(b.buckets)) + 1
	for i := range b.buckets {
		if b.buckets[i].sec.Load() >= oldest {
			reqs += b.buckets[i].reqs.Load()
			retries += b.buckets[i].retries.Load()
		}
	}
	allowed := b.cfg.Ratio*float64(reqs) + b.cfg.MinPerSecond*float64(len(b.buckets))
	if float64(retries+1) > allowed {
		return false
	}
	bk.retries.Add(1)
	return true
}
