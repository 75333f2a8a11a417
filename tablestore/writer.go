package tablestore

import (
	"context"
	"time"

	"github.com/bulkhead-router/bulkhead/routing"
)

// DefaultInterval is RunWriter's interval when given 0 or less.
const DefaultInterval = time.Second

// maxRetryDelay bounds the back-off between retries of a failed write.
const maxRetryDelay = time.Minute

// Offer hands the writer a new table; the newest one offered wins. It never
// blocks and is safe for concurrent use. The table's slices must not be
// modified afterwards (routing tables are not).
func (s *Store) Offer(t routing.Table) {
	s.pendingMu.Lock()
	s.pending = &t
	s.pendingMu.Unlock()
	s.signal()
}

func (s *Store) signal() {
	select {
	case s.kick <- struct{}{}:
	default: // a signal is already waiting
	}
}

func (s *Store) takePending() (routing.Table, bool) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.pending == nil {
		return routing.Table{}, false
	}
	t := *s.pending
	s.pending = nil
	return t, true
}

// requeue puts back a table whose write failed, unless a newer one came.
func (s *Store) requeue(t routing.Table) {
	s.pendingMu.Lock()
	if s.pending == nil {
		s.pending = &t
	}
	s.pendingMu.Unlock()
	s.signal()
}

// RunWriter writes offered tables until ctx ends, then writes the pending
// one, if any, and returns. A table offered after a quiet interval is
// written at once; further ones within interval of a write wait for the
// interval to pass, and only the newest is written. A write that fails for
// an I/O reason is retried with the newest table, after interval doubling
// per failure up to a minute. Run one writer per Store.
func (s *Store) RunWriter(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	var next time.Time // no write before this
	failures := 0
	for {
		select {
		case <-ctx.Done():
			s.flush()
			return
		case <-s.kick:
		}
		if wait := time.Until(next); wait > 0 {
			fired, stop := s.after(wait)
			select {
			case <-ctx.Done():
				stop()
				s.flush()
				return
			case <-fired:
			}
		}
		t, ok := s.takePending()
		if !ok {
			continue
		}
		delay := interval
		if retry, err := s.save(t); err != nil && retry {
			failures++
			delay = min(interval<<min(failures-1, 16), max(maxRetryDelay, interval))
			s.requeue(t)
		} else {
			failures = 0
		}
		next = time.Now().Add(delay)
	}
}

// flush writes the pending table, if any, once.
func (s *Store) flush() {
	if t, ok := s.takePending(); ok {
		_ = s.Save(t) // failures are logged and counted by Save
	}
}

func realAfter(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}
