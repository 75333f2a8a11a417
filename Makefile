# bulkhead: the two commands in the README are `make demo` and `make test`.
# Everything they need is installed or built here (Go module proxy, apt).

export GOTOOLCHAIN := local
GO ?= go
# The tests start real kube-apiservers and network namespaces; give slow CI
# machines room, but not forever.
TEST_TIMEOUT ?= 20m

.PHONY: all build demo test unit vet deps controlplane cluster-up cluster-down clean bench-routes test-outage bench-upstream chaos chaos-short bench-peers bench-fleet conformance-gateway

all: build

## build: the static router binary at bin/bulkhead
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/bulkhead ./cmd/bulkhead

## deps: system packages (iproute2, curl) if missing
deps:
	@hack/install-deps.sh

## controlplane: build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl once (cached)
controlplane:
	@$(GO) run ./hack/devcluster build

## demo: local control plane, example pods and Ingresses, the router; Ctrl-C stops all
demo: deps controlplane build
	@$(GO) run ./hack/demo

## test: every test, unit and integration, against a real control plane, and a short subset of the Gateway API conformance suite
test: deps controlplane vet
	@hack/install-deps.sh peers
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	cd hack/conformance && $(GO) test -count=1 -timeout 15m -run '^TestGatewayConformanceShort$$' .

## unit: the tests that need neither root nor a control plane
unit:
	$(GO) test -count=1 -short ./...

## test-outage: the API server outage scenarios with 60 s outages (make test runs them with 20 s)
test-outage: deps controlplane
	BULKHEAD_OUTAGE=60s $(GO) test -count=1 -v -timeout 30m -run 'TestOutage|TestRestartDuringOutage|TestMassDeletion|TestCorruptSnapshot' ./e2e/

## bench-routes: route source at 1k and 10k Ingresses against a real API server, this tree beside the build before issue 13 (BENCH_BEFORE)
bench-routes: deps controlplane
	hack/bench-routes.sh

## bench-upstream: happy-path throughput through skipper with breakers and retries off and on
bench-upstream:
	$(GO) test -run '^$$' -bench 'ProxyOverhead' -benchtime 2s -count 6 ./upstream/

## bench-peers: bulkhead beside nginx, HAProxy and stock skipper: same pods, same wrk load, interleaved rounds, then one pod SIGKILLed under load (root, about 6 min; docs/BENCHMARKS.md)
BENCH_PEERS_FLAGS ?=
bench-peers: deps controlplane build
	@hack/install-deps.sh bench
	$(GO) run ./hack/benchpeers $(BENCH_PEERS_FLAGS)

## bench-fleet: 50 real routers against one kube-apiserver holding 2,000 Ingresses, Services and EndpointSlices each, SIGKILLed and restarted: its peak memory, the routers' lists and their spread, an outside client's latency, convergence and failed requests, before (-apiserver-reconnect=restart) and after (resume) in one table (root, a few minutes)
BENCH_FLEET_FLAGS ?=
bench-fleet: deps controlplane
	$(GO) run ./hack/benchfleet $(BENCH_FLEET_FLAGS)

## chaos: every chaos scenario (docs/CHAOS.md) against a local control plane, real pods and the router, under load (about 4 min)
chaos: deps controlplane
	$(GO) run ./hack/chaos $(CHAOS_FLAGS)

## chaos-short: the CI subset of the chaos scenarios (make test runs it as TestChaosShort)
chaos-short: deps controlplane
	$(GO) run ./hack/chaos -short $(CHAOS_FLAGS)

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "not gofmt-ed: $$unformatted" >&2; exit 1; fi

## cluster-up / cluster-down: a local control plane with controllers and scheduler for kubectl, in the background
cluster-up: controlplane
	@$(GO) run ./hack/devcluster up
cluster-down:
	@$(GO) run ./hack/devcluster down

## conformance-gateway: the upstream Gateway API conformance suite (v1.6.3, GATEWAY-HTTP and GATEWAY-GRPC, unmodified) against bin/bulkhead on a local control plane; report in docs/conformance/ (root; docs/CONFORMANCE.md)
CONFORMANCE_TIMEOUT ?= 60m
CONFORMANCE_FLAGS ?=
conformance-gateway: deps controlplane build
	mkdir -p docs/conformance
	cd hack/conformance && BULKHEAD_BINARY=$(CURDIR)/bin/bulkhead BULKHEAD_CONFORMANCE_REPORT=$(CURDIR)/docs/conformance/gateway-http-report.yaml \
		$(GO) test -count=1 -v -timeout $(CONFORMANCE_TIMEOUT) -run '^TestGatewayConformance$$' . $(CONFORMANCE_FLAGS)

## conformance-ingress: the upstream Ingress conformance suite (kubernetes-sigs/ingress-controller-conformance at f91a799, unmodified, every feature, TLS included) against bin/bulkhead on a local control plane; report in docs/conformance/ (root; ports 80 and 443 of 127.0.0.1, so not beside conformance-gateway; about 15 min; docs/CONFORMANCE.md)
.PHONY: conformance-ingress
INGRESS_CONFORMANCE_TIMEOUT ?= 60m
INGRESS_CONFORMANCE_FLAGS ?=
conformance-ingress: deps controlplane build
	mkdir -p docs/conformance
	cd hack/ingressconformance && BULKHEAD_BINARY=$(CURDIR)/bin/bulkhead BULKHEAD_INGRESS_CONFORMANCE_REPORT=$(CURDIR)/docs/conformance/ingress-report.json \
		BULKHEAD_INGRESS_CONFORMANCE_FLAGS='$(INGRESS_CONFORMANCE_FLAGS)' \
		$(GO) test -count=1 -v -timeout $(INGRESS_CONFORMANCE_TIMEOUT) -run '^TestIngressConformance$$' .

clean:
	rm -rf bin
