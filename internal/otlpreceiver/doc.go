// Package otlpreceiver is an OTLP/gRPC trace receiver for tests: a real
// gRPC server on a real socket serving the collector's TraceService
// (go.opentelemetry.io/proto/otlp's generated code), which keeps every
// span it is sent, flattened for assertions (ids in hex, attributes by
// key, the resource's attributes). Tests of the tracing package and the
// e2e tests point a real exporter (in process or in a router process) at
// it, so what they check went through the SDK, the exporter and the wire.
// It is used by tests only.
package otlpreceiver
