package main

import (
	"time"

	skrouting "github.com/zalando/skipper/routing"

	"github.com/bulkhead-router/bulkhead/admin"
	"github.com/bulkhead-router/bulkhead/proxy"
	"github.com/bulkhead-router/bulkhead/upstream"
)

// explainOptions wires the admin endpoint's /explain to the serving path:
// the proxy's own lookup, the predicate specifications its skipper routing
// registers (the other candidates' conditions are made from them), the
// Gateway port of the proxy listener, and the upstream layer's policy and
// retry settings.
func explainOptions(cfg config, px *proxy.Proxy, predicates []skrouting.PredicateSpec, resilience *upstream.Upstream) *admin.ExplainOptions {
	return &admin.ExplainOptions{
		Matcher:     px,
		Predicates:  predicates,
		GatewayPort: cfg.proxyGatewayPort(),
		Defaults:    resilience.DefaultPolicy(),
		// upstream.New's defaults: serve sets neither MaxRetries nor the
		// budget (upstream.Config, BudgetConfig), only the deadline.
		Retries: admin.RetrySettings{MaxRetries: 2, BudgetRatio: 0.2, BudgetPerSecond: 3,
			BudgetWindow: admin.Duration(10 * time.Second), Deadline: admin.Duration(cfg.RetryDeadline)},
	}
}
