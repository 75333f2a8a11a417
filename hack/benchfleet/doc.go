// Command benchfleet measures what a fleet of bulkhead routers costs a
// kube-apiserver that comes back from an outage (make bench-fleet).
//
// One real etcd and kube-apiserver (internal/controlplane, with an audit
// log of every list and watch of the kinds bulkhead reads) hold -objects
// each of Ingresses, Services and EndpointSlices (TEST-NET endpoints, never
// sent traffic) plus one real pod behind web.fleet. For each fault of
// -faults and each mode of -modes (-apiserver-reconnect: restart, the
// behaviour before, and resume), -routers bulkhead processes (the real
// binary, each with its own ports and state directory, -log-level warn)
// start and serve; a light load (-rate requests per second per router) runs
// against web.fleet on every router; kube-apiserver is SIGKILLed and
// started again (kill: the new server has no watch history) or SIGSTOPped
// and SIGCONTed (freeze: it keeps it, as through a network partition)
// after -outage; a marker Ingress is created at once and every router is
// polled until it serves it. Reported per fault and mode, in one table:
//
//   - kube-apiserver's peak resident memory after its return (VmHWM);
//   - the routers' full lists (LIST or streaming watch-list) and watches
//     resumed, from the audit log, with the spread of the lists in time;
//   - the latency a client outside the fleet sees for a GET of one
//     namespace every 100 ms meanwhile;
//   - the time until every router serves the marker;
//   - every non-200 answer of the load.
package main
