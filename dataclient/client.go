package dataclient

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	skrouting "github.com/zalando/skipper/routing"
	"k8s.io/client-go/kubernetes"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/bulkhead-router/bulkhead/routing"
)

// Options configure New.
type Options struct {
	// Connector reaches the API server. Either it or Client is required.
	Connector Connector
	// Client is a fixed client (tests with a fake clientset): informers are
	// never restarted on new connections.
	Client kubernetes.Interface
	// GatewayClient goes with Client: a fixed Gateway API client; nil:
	// with Client, the Gateway API is not read.
	GatewayClient gatewayclient.Interface
	// DisableGatewayAPI: never read the Gateway API, even where the API
	// server serves it.
	DisableGatewayAPI bool
	// Translate are the translation options (the controller name).
	Translate routing.Options
	// Store keeps the last applied table on local disk. Nil: none.
	Store TableStore
	// SyncTimeout is how long a start waits for the API server before
	// serving the stored table; an API server that does not answer at all
	// is given up on at once. Zero: 5 s.
	SyncTimeout time.Duration
	// Guard holds back updates that remove too much at once.
	Guard GuardOptions
	// Reconnect is what happens when the API server is back after an
	// outage: ReconnectResume (the default) or ReconnectRestart.
	Reconnect string
	// RelistSpread is the window within which a router relists after an
	// outage, at a moment of its own drawn at random (resume mode). Zero:
	// no spread. Watches that can resume do so at once.
	RelistSpread time.Duration
	// Heartbeat is how often a connected client checks that the API
	// server is still there. Zero: 5 s.
	Heartbeat time.Duration
	// Log receives problems (each logged once, when it appears) and
	// lifecycle lines. Nil: discarded.
	Log *slog.Logger
	// Registerer takes the metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// HoldOff is how long a change that follows a rebuild closely (within
	// HoldOff) waits for more changes; the first change after a quiet
	// spell is rebuilt at once. Zero: 10 ms.
	HoldOff time.Duration
	// MaxDelay bounds the hold-off under a continuous stream of changes.
	// Zero: 100 ms.
	MaxDelay time.Duration
	// Endpoints receives the endpoints of the backends routes name, before
	// skipper gets the routes, and whenever they change. Nil: nobody (the
	// routes then answer 503 wherever the upstream layer does not know
	// their backend).
	Endpoints EndpointSink
	// Shards splits the routes into that many skipper tables
	// (routing.RouteShard), each fed by Shard(i): a route change gives
	// skipper only the shards it touched. Zero: 1 (the Client itself).
	Shards int
	// OnTable, if set, is called from the rebuild goroutine with every
	// applied table (the status writers follow it), live when it was built
	// from the API server's objects (not the stored table, whose Gateway
	// API status is not kept), but not after a change of endpoints alone
	// (Table has those). It must not block long.
	OnTable func(t routing.Table, live bool)
}

// TableStore is where the last applied table is kept across restarts.
type TableStore interface {
	// Load returns the stored table and when it was saved.
	Load() (routing.Table, time.Time, error)
	// Offer hands over a newly applied table; it must not block.
	Offer(routing.Table)
}

// EndpointSink is the upstream layer, which holds the live endpoint set of
// every backend beside the route table (upstream.Upstream).
type EndpointSink interface {
	// SetEndpoints replaces the endpoints ("ip:port") of the backends
	// named by the keys ("namespace/service:port"); nil removes one.
	SetEndpoints(update map[string][]string)
}

// Where the applied table came from.
const (
	SourceAPIServer = "apiserver"
	SourceSnapshot  = "snapshot"
)

// Client is the Kubernetes route source. Create it with New, start it with
// Run, and give it to skipper as a DataClient.
type Client struct {
	o       Options
	log     *slog.Logger
	metrics *metrics
	conn    Connector
	changed chan struct{} // size 1: a rebuild is wanted
	lost    chan struct{} // size 1: the watch reported an error
	confirm chan struct{} // size 1: an operator confirmed a held update
	guard   *guard        // used by the rebuild goroutine only
	gate    *gate         // between the informers and the API server

	mu          sync.Mutex
	watch       *watcher // nil until Run
	stopWatch   context.CancelFunc
	watchGen    chan struct{}  // closed and replaced when another watcher is installed
	current     *published     // the applied table; nil until there is one
	newTable    chan struct{}  // closed and replaced when current changes
	delivered   []*shardTable  // per shard: what skipper has been given
	undelivered []time.Time    // change times of the next table
	pending     []pendingTable // tables not live in every shard they changed, oldest first
	holdView    []HeldObject   // what the guard holds, for Status; nil when nothing
	api         connState
	closed      chan struct{}
	closeOnce   sync.Once
	lastProbs   []routing.Problem
	nodeAddrs   []netip.Addr // set by SetNodeAddresses; nil: o.Translate's
	fullRebuild bool         // the options changed: the next rebuild translates everything

	// translator remembers the previous full rebuild's work (routing.Translator);
	// only the rebuild goroutine uses it.
	translator *routing.Translator
	offers     endpointOffers // paces the Store's endpoint-only tables (rebuild.go)
}

var (
	_ skrouting.DataClient      = (*Client)(nil)
	_ skrouting.NamedDataClient = (*Client)(nil)
)

// connState is what the client knows of its API server.
type connState struct {
	connected bool
	since     time.Time // of the current state
	lastSync  time.Time
	lastError string
}

// New prepares the client. Nothing runs until Run.
func New(o Options) *Client {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.HoldOff == 0 {
		o.HoldOff = 10 * time.Millisecond
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = 100 * time.Millisecond
	}
	if o.SyncTimeout == 0 {
		o.SyncTimeout = 5 * time.Second
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 5 * time.Second
	}
	if o.Shards <= 0 {
		o.Shards = 1
	}
	if o.Reconnect == "" {
		o.Reconnect = ReconnectResume
	}
	o.Guard = o.Guard.withDefaults()
	conn := o.Connector
	if conn == nil {
		conn = staticConnector{client: o.Client, gateway: o.GatewayClient}
	}
	c := &Client{
		o:         o,
		log:       o.Log,
		conn:      conn,
		changed:   make(chan struct{}, 1),
		lost:      make(chan struct{}, 1),
		confirm:   make(chan struct{}, 1),
		newTable:  make(chan struct{}),
		delivered: make([]*shardTable, o.Shards),
		closed:    make(chan struct{}),
		api:       connState{since: time.Now()},
		watchGen:  make(chan struct{}),
		guard:     newGuard(o.Guard),
	}
	c.metrics = newMetrics(o.Registerer, c)
	c.gate = newGate(o.Reconnect == ReconnectResume, o.RelistSpread, c.metrics, c.noteLost)
	return c
}

// Name identifies this client in skipper's logs and metrics.
func (c *Client) Name() string { return "kubernetes" }

// Run watches the cluster and keeps the table until ctx ends.
//
// At start it waits for the informers to sync. If the API server does not
// answer, or does not sync within SyncTimeout, it serves the stored table
// (if there is one) and keeps trying. A lost connection never touches the
// table; when the API server is back after an outage, the watches resume
// or relist (spread in time) through the gate (resume mode), or the
// informers are restarted on fresh connections (restart mode); in neither
// is anything left to client-go's reflector backoff, which grows to 30 s.
func (c *Client) Run(ctx context.Context) error {
	go c.supervise(ctx)
	if err := c.startWatcher(ctx); err != nil {
		return err
	}
	if !c.initialSync(ctx) {
		return nil
	}
	lastRebuild := time.Now() // the first build, after sync
	for {
		// A hold ends on its own clock: nothing that happens meanwhile
		// moves it.
		var holdExpiry <-chan time.Time
		var holdTimer *time.Timer
		if next := c.guard.nextRelease(); !next.IsZero() {
			holdTimer = time.NewTimer(time.Until(next))
			holdExpiry = holdTimer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.changed:
			// A change of endpoints alone costs one re-resolution of its
			// Services: it goes at once. So does the first change after a
			// quiet spell (no rebuild within HoldOff): an ordinary edit
			// waits for nothing. A change that follows a rebuild closely
			// is part of a burst: it waits a short hold-off, so the rest
			// of the burst costs one translation. A removal always waits:
			// the deletion guard must see a mass deletion as one burst,
			// not apply its first deletion alone and hold the rest (the
			// first one's routes would answer 404 until the hold).
			removal := c.removalPending()
			burst := time.Since(lastRebuild) < c.o.HoldOff || removal
			quiet, limit := c.o.HoldOff, c.o.MaxDelay
			if removal {
				// The API server takes a few milliseconds per DELETE, more
				// when loaded: a burst's deletions can come further apart
				// than the hold-off. Wait for a longer quiet spell, so the
				// guard sees them together (a deleted route answers a
				// little longer; nothing else waits).
				quiet, limit = max(quiet, removalQuiet), max(limit, removalMaxDelay)
			}
			if !c.endpointsOnly() && burst && !c.holdOff(ctx, quiet, limit) {
				return nil
			}
			c.rebuild()
			lastRebuild = time.Now()
		case <-holdExpiry:
			c.rebuild() // the guard releases what is due
		case <-c.confirm:
			c.guard.confirm = true
			c.rebuild()
		}
		if holdTimer != nil {
			holdTimer.Stop()
		}
	}
}

// Close releases a LoadUpdate that is waiting, so skipper can shut down.
func (c *Client) Close() {
	c.closeOnce.Do(func() { close(c.closed) })
}
