// Package tracing traces requests through the router with OpenTelemetry:
// a server span per sampled request and a span per attempt toward a pod,
// its child, exported over OTLP/gRPC; and a W3C traceparent on every
// attempt, sampled or not, so a pod's spans join the trace as children
// of the attempt that reached them.
//
// Where it sits: Handler wraps the upstream layer's handler (inside the
// access log, if any). It puts a record (package record) into the
// request's context, or uses the access log's, and makes itself the
// record's AttemptTracer: the upstream layer tells it of each attempt
// just before it goes out (the traceparent is set then) and once its
// outcome is known (endpoint, breaker state, status or error class). It
// reads the route, backend, retries, breaker skips and why retrying
// stopped from the record when the request is done. It sets the record's
// TraceID, which the access log prints, and notes a gRPC answer's
// grpc-status. Of the router's packages it depends on record only, and
// nothing of the router depends on it: cmd installs it when an OTLP
// endpoint is configured, and without one it is not in the chain at all
// (no record, no allocation).
//
// Sampling and trust. The decision is made per request before the SDK is
// asked for anything: an unsampled request gets no span object, only a
// trace id and an id per attempt to propagate (flag 00), so the pod always
// receives a traceparent of ours. The ratio decides by a random draw,
// never by the trace id. A client's traceparent is believed only with
// TrustParent and only from a peer in TrustedProxies (the router's
// -trusted-proxies): then the trace goes on (its trace id, its span as the
// server span's parent), its sampled flag decides (both ways) and its
// tracestate goes on to the pods. From anyone else it is ignored as if
// absent: a new trace id, the ratio's decision, tracestate removed, and
// the header replaced by one of ours before the layers below see it (a
// mirrored copy is sent with the request's headers), so a client can
// neither make every request traced and exported (a cost it would choose)
// nor file our spans and the pods' under a trace id of its choosing.
// Behind an AWS ALB, trusting the ALB's addresses would be trusting the
// client (the ALB passes a client's traceparent through unchanged), hence
// TrustParent is a choice of its own, off by default.
//
// Export is batched and asynchronous (the SDK's batch span processor): a
// request never waits for the collector. At most MaxQueueSize spans wait
// or are being exported; further spans are dropped and counted
// (bulkhead_tracing_spans_dropped_total), so a collector that is slow,
// hung or down costs spans, never latency or memory. A failed export is
// retried within ExportTimeout, then counted in
// bulkhead_tracing_export_errors_total (its spans in
// bulkhead_tracing_spans_exported_total{result="error"}); the first
// failure of a streak is logged (warning) and the recovery once (info),
// never each failure. Shutdown flushes the queue.
package tracing
