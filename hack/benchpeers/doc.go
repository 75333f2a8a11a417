// Command benchpeers measures bulkhead beside its peers, nginx, HAProxy and
// stock skipper, on this machine, with the same backends and the same load
// for all, and prints each peer's figures as a ratio to bulkhead's
// (`make bench-peers`; method and latest figures in docs/BENCHMARKS.md).
//
// # What runs
//
// A local control plane (internal/controlplane) and two pods in network
// namespaces (internal/testpods), published as a Service and EndpointSlice
// with an Ingress for bulkhead; nginx, HAProxy and skipper get the same two
// pod addresses in a configuration generated from templates/. bulkhead is
// the built binary (-bulkhead, default bin/bulkhead); skipper is built
// from the Go module proxy at the version bulkhead embeds (hack/peers,
// cached by internal/toolbuild); nginx, HAProxy and wrk are the Debian
// packages (hack/install-deps.sh bench).
//
// Every proxy gets one CPU and one worker: nginx one worker process,
// HAProxy one thread, bulkhead and skipper GOMAXPROCS=1, each started
// under `taskset -c <proxy-cpu>`. This program pins itself, and so
// everything it starts without its own taskset (wrk, the pods, the control
// plane, the fault-run load), to the other CPU, so the proxy under test
// never competes with the load for its CPU. Keep-alive is on, toward
// clients and toward the pods, for all four; all four send the pod the
// client's Host, X-Forwarded-For/-Host/-Proto and a request id.
//
// # Access logs
//
// Every proxy runs with its access log off (bulkhead: -access-log=false).
// bulkhead, nginx and skipper also run a second time with it on, as
// bulkhead+log, nginx+log and skipper+log, side by side in the same
// throughput rounds: every request logged, to a file in the instance
// directory, in JSON (bulkhead's default line; nginx a log_format with
// the same fields, buffered up to 64 KiB as bulkhead gathers its writes;
// skipper -access-log-json-enabled). The table gives each log-on rate
// over the same proxy's log-off rate, and its CPU per request over the
// log-off one's. After the rounds each log-on proxy
// is stopped (writing what it holds) and its file must have a line for
// every request wrk completed, or the run fails: a log that lost lines
// would flatter its figure; bulkhead's dropped-lines metric is reported
// too. HAProxy logs to syslog only and runs without a log. The log-on
// runs are left out of the fault runs and the gRPC round.
//
// # Throughput
//
// All proxies run side by side, idle but for the one under test. After a
// warm-up, each round runs wrk (closed loop, fixed keep-alive connections,
// --latency) against every proxy in turn, and against one pod directly,
// which shows the ceiling of the load side: a proxy close to it is not
// what limits its own figure. The order rotates every round, so none
// always runs first or last. The table shows the medians across rounds.
// Beside the rate, each run measures the CPU time the proxy's processes
// used (user and system, from /proc, its workers included) per request
// completed: on a shared machine, where other work takes the proxy's CPU
// at times, the rate swings with what the proxy was given, the CPU per
// request much less.
//
// # Fault run
//
// Per proxy, a fresh instance in front of two fresh pods, an open-loop GET
// load at a fixed rate (internal/loadgen: every failure is counted, by
// status or error, never retried by the client), and one pod SIGKILLed
// after a fixed number of requests. No configuration is changed after the
// kill, for any proxy: the peers keep the dead pod in their upstream lists
// and bulkhead's EndpointSlice keeps listing it, so each proxy relies on
// its own retries and health checks.
//
// # gRPC round
//
// Two grpc-echo pods (internal/testpods/grpcecho: grpc-go's own server
// over h2c), in network namespaces of their own, published as a Service
// whose port says appProtocol kubernetes.io/h2c with an EndpointSlice and
// an Ingress for bulkhead; nginx gets them through grpc_pass (listen
// http2: h2c from clients) and HAProxy through proto h2 on both sides
// (templates/*-grpc.*). Stock skipper has no HTTP/2 listener for clients
// and is left out. wrk speaks HTTP/1.1 only, so the load is this
// program's own (internal/grpcload.Saturate): grpc-go unary calls, a
// fixed number in flight over a fixed number of HTTP/2 connections, back
// to back for -grpc-duration, on the load CPU like wrk. The rounds rotate
// as in the HTTP round; "calls/s" counts calls answered OK, "errors" the
// others. No external tool is needed beyond nginx and HAProxy, which the
// HTTP round requires already (missing, the run fails).
//
// Run it as root from the repository (network namespaces need root, and
// the tool builds find the module from the working directory).
package main
