package dataclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/routing"
)

// initialSync waits for the first sync, serving the stored table meanwhile
// when the API server is out of reach. It returns false if ctx ended.
func (c *Client) initialSync(ctx context.Context) bool {
	probeCtx, cancel := context.WithTimeout(ctx, c.o.SyncTimeout)
	defer cancel()
	if err := c.conn.Probe(probeCtx); err != nil {
		if ctx.Err() != nil {
			return false
		}
		c.log.Warn("API server unreachable at start; serving the stored table until it answers", logging.KeyError, err)
		c.setConnected(false, err.Error())
		c.useSnapshot()
		c.noteLost(err)
	} else if !c.currentWatcher().waitForSync(probeCtx) {
		if ctx.Err() != nil {
			return false
		}
		c.log.Warn("API server did not sync in time; serving the stored table until it does", "sync_timeout", c.o.SyncTimeout)
		c.setConnected(false, "not synced within the sync timeout")
		c.useSnapshot()
		c.noteLost(errors.New("not synced within the sync timeout"))
	} else {
		c.synced()
		return true
	}
	// Wait for a sync of the current watcher, or of one the supervisor
	// installs instead.
	for {
		c.mu.Lock()
		w, swapped := c.watch, c.watchGen
		c.mu.Unlock()
		wctx, stop := context.WithCancel(ctx)
		go func() {
			select {
			case <-swapped:
				stop()
			case <-wctx.Done():
			}
		}()
		ok := w.waitForSync(wctx)
		stop()
		if ctx.Err() != nil {
			return false
		}
		if ok && w == c.currentWatcher() {
			c.synced()
			return true
		}
	}
}

// synced is the first sync: the first table from the API server.
func (c *Client) synced() {
	c.metrics.synced.Set(1)
	c.setConnected(true, "")
	c.log.Info("kubernetes caches synced")
	// The first build reads the synced caches, so the signals of the
	// initial listing are covered by it: drop them rather than build twice.
	select {
	case <-c.changed:
	default:
	}
	c.rebuild()
}

func (c *Client) currentWatcher() *watcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch
}

// startWatcher starts informers on a fresh client and installs them.
func (c *Client) startWatcher(ctx context.Context) error {
	w, stop, err := c.newStartedWatcher(ctx)
	if err != nil {
		return err
	}
	c.install(w, stop)
	return nil
}

func (c *Client) newStartedWatcher(ctx context.Context) (*watcher, context.CancelFunc, error) {
	clients, err := c.conn.NewClient(c.gate.hooks())
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if c.o.DisableGatewayAPI {
		clients.Gateway = nil
	}
	w := newWatcher(clients, c.metrics, c.changed, c.noteLost)
	wctx, stop := context.WithCancel(ctx)
	w.start(wctx)
	return w, stop, nil
}

// install makes w the current watcher and stops the previous one.
func (c *Client) install(w *watcher, stop context.CancelFunc) {
	c.mu.Lock()
	old := c.stopWatch
	c.watch, c.stopWatch = w, stop
	close(c.watchGen)
	c.watchGen = make(chan struct{})
	c.mu.Unlock()
	if old != nil {
		old()
	}
}

// reconnectSyncTimeout bounds the relist of restarted informers.
const reconnectSyncTimeout = time.Minute

// supervise notices a lost API server and handles its return. Probes back
// off (jittered, capped at 2 s) while it is away, so its return is noticed
// within about 2 s; client-go's own reflector backoff would wait up to 30 s.
// In resume mode the informers are kept: the gate holds their requests
// while the server is away and lets them go when it is back (relists at a
// random moment within RelistSpread). In restart mode new informers are
// started on fresh connections and installed once synced.
func (c *Client) supervise(ctx context.Context) {
	heartbeat := time.NewTicker(c.o.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.lost:
		case <-heartbeat.C:
			if !c.isConnected() {
				continue // not synced yet, or already handled
			}
			hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := c.conn.Alive(hctx)
			cancel()
			if err == nil {
				continue
			}
		}
		failures, ok := c.probeUntilUp(ctx)
		if !ok {
			return
		}
		if failures == 0 && c.isConnected() && !c.gate.isClosed() {
			continue // the watch failed but the server answers: client-go retries at once
		}
		if c.o.Reconnect == ReconnectResume {
			c.resume(ctx)
			continue
		}
		w, stop, err := c.newStartedWatcher(ctx)
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, reconnectSyncTimeout)
			if !w.waitForSync(sctx) {
				err = errors.New("restarted informers did not sync within " + reconnectSyncTimeout.String())
			}
			cancel()
		}
		if err != nil {
			if stop != nil {
				stop()
			}
			c.log.Warn("reconnecting to the API server failed; retrying", logging.KeyError, err)
			c.noteLost(err)
			continue
		}
		w.inheritGone(c.currentWatcher())
		c.install(w, stop)
		outage := c.setConnected(true, "")
		c.metrics.reconnects.Inc()
		c.log.Info("reconnected to the API server; informers restarted", "outage", outage.Round(time.Millisecond))
		c.signal() // rebuild from the fresh caches
	}
}

// resume lets the kept informers reach the API server again: watches
// resume from their resourceVersion at once (the server answers 410 Gone
// when it no longer has that history, as a restarted kube-apiserver does),
// and relists wait for this router's random moment within RelistSpread.
// The table is untouched until a relist has completed: the reflector
// replaces an informer's cache only with a full list, and what that list
// no longer finds reaches the deletion guard as unannounced (a tombstone).
func (c *Client) resume(ctx context.Context) {
	delay := c.gate.relistDelay()
	w := c.currentWatcher()
	forget := c.clusterChanged(ctx, w)
	if !c.gate.open(delay, forget) {
		delay = 0 // nothing was held: requests were never stopped
	}
	if !w.hasSynced() {
		// Never synced (the server was away at start): initialSync waits
		// for the first listing and reports it.
		c.log.Info("API server answers; listing", "relist_delay", delay.Round(time.Millisecond))
		return
	}
	outage := c.setConnected(true, "")
	c.metrics.reconnects.Inc()
	c.log.Info("reconnected to the API server; watches resume where it allows, otherwise relist after this router's delay",
		"outage", outage.Round(time.Millisecond), "relist_delay", delay.Round(time.Millisecond))
	c.signal()
}

// clusterChanged reports whether the cluster behind the address is another
// one than the informers know (a wiped or replaced store, another cluster):
// the default/kubernetes Service's UID differs from the cached one. Such a
// server could accept a watch from one of our resourceVersions and never
// tell what we hold that it does not have. Unknown counts as unchanged.
func (c *Client) clusterChanged(ctx context.Context, w *watcher) bool {
	if w == nil || !w.hasSynced() {
		return false
	}
	obj, ok, err := w.services.GetStore().GetByKey("default/kubernetes")
	if err != nil || !ok {
		return false
	}
	known, ok := obj.(*routing.Service)
	if !ok {
		return false
	}
	id, err := c.conn.ClusterIdentity(ctx)
	switch {
	case errors.Is(err, ErrNoClusterIdentity):
		id = "none" // the store was wiped: the API server has not made it again yet
	case err != nil || id == "" || id == string(known.UID):
		return false
	}
	c.log.Warn("the API server's cluster is not the one the caches came from (default/kubernetes Service UID changed); relisting every kind, none resumes",
		"was", known.UID, "now", id)
	return true
}

// probeUntilUp probes with backoff until the API server answers, and
// returns how many probes failed; false if ctx ended.
func (c *Client) probeUntilUp(ctx context.Context) (int, bool) {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMultiplier(1.6),
		backoff.WithRandomizationFactor(0.3),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(0), // never give up
	)
	failures := 0
	for {
		err := c.conn.Probe(ctx)
		if err == nil {
			return failures, true
		}
		if ctx.Err() != nil {
			return failures, false
		}
		failures++
		if failures == 1 {
			c.gate.close() // hold the informers' requests rather than fail them
			c.setConnected(false, err.Error())
		}
		select {
		case <-ctx.Done():
			return failures, false
		case <-time.After(b.NextBackOff()):
		}
	}
}

// noteLost hears a failed list or watch and wakes the supervisor. An
// expired resource version is client-go's normal relist, not an outage.
func (c *Client) noteLost(err error) {
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return
	}
	select {
	case c.lost <- struct{}{}:
	default:
	}
}

// setConnected records the API server's state, logs transitions, and
// returns how long the previous state lasted.
func (c *Client) setConnected(connected bool, why string) time.Duration {
	now := time.Now()
	c.mu.Lock()
	prev := c.api
	if connected {
		c.api.lastSync = now
		c.api.lastError = ""
	} else {
		c.api.lastError = why
	}
	if prev.connected != connected {
		c.api.connected, c.api.since = connected, now
	}
	c.mu.Unlock()
	if connected {
		c.metrics.connected.Set(1)
		c.metrics.lastSync.Set(float64(now.UnixNano()) / 1e9)
	} else {
		c.metrics.connected.Set(0)
		if prev.connected {
			c.log.Warn("lost the API server; the current table keeps serving", logging.KeyError, why)
		}
	}
	return now.Sub(prev.since)
}

func (c *Client) isConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.api.connected
}

// Ingresses lists the cached Ingresses (all classes). They are shared with
// the informer and must not be modified.
func (c *Client) Ingresses() []*networkingv1.Ingress {
	w := c.currentWatcher()
	if w == nil {
		return nil
	}
	objs := w.ingresses.GetStore().List()
	out := make([]*networkingv1.Ingress, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*networkingv1.Ingress))
	}
	return out
}
