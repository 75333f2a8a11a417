package tracing

import (
	"go.opentelemetry.io/otel/trace"
)

// W3C Trace Context (https://www.w3.org/TR/trace-context/): the
// traceparent header is version-traceid-parentid-flags in lowercase hex,
// "00-" + 32 + "-" + 16 + "-" + 2 = 55 characters for version 00.
const (
	headerTraceparent = "Traceparent" // canonical: read and set without allocating a key
	headerTracestate  = "Tracestate"
	traceparentLen    = 55
	flagSampled       = 0x01
)

// incoming is what a request's traceparent says: its trace id, the
// caller's span id and the caller's sampled flag. ok is false when the
// header is absent or not valid (then a new trace is started, and its
// tracestate must be ignored).
type incoming struct {
	traceID trace.TraceID
	spanID  trace.SpanID
	sampled bool
	ok      bool
}

// parseTraceparent reads the traceparent header values of a request.
// Exactly one value is accepted: two traceparents cannot be told apart.
// Versions above 00 are read as 00 when they start like it (the spec's
// forward compatibility); ff is invalid.
func parseTraceparent(values []string) incoming {
	if len(values) != 1 {
		return incoming{}
	}
	s := values[0]
	if len(s) < traceparentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return incoming{}
	}
	ver, ok := hexByte(s[0], s[1])
	if !ok || ver == 0xff || (ver == 0 && len(s) != traceparentLen) || (ver != 0 && len(s) > traceparentLen && s[traceparentLen] != '-') {
		return incoming{}
	}
	var in incoming
	if !decodeHex(in.traceID[:], s[3:35]) || !decodeHex(in.spanID[:], s[36:52]) {
		return incoming{}
	}
	flags, ok := hexByte(s[53], s[54])
	if !ok || !in.traceID.IsValid() || !in.spanID.IsValid() {
		return incoming{}
	}
	in.sampled = flags&flagSampled != 0
	in.ok = true
	return in
}

// formatTraceparent writes the version 00 traceparent of a span.
func formatTraceparent(buf *[traceparentLen]byte, tid trace.TraceID, sid trace.SpanID, sampled bool) {
	b := buf[:0]
	b = append(b, '0', '0', '-')
	b = appendHex(b, tid[:])
	b = append(b, '-')
	b = appendHex(b, sid[:])
	b = append(b, '-', '0', '0')
	if sampled {
		b[54] = '1'
	}
}

const hexDigits = "0123456789abcdef"

func appendHex(b, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexDigits[c>>4], hexDigits[c&0x0f])
	}
	return b
}

// decodeHex decodes lowercase hex only: the spec forbids upper case.
func decodeHex(dst []byte, s string) bool {
	for i := range dst {
		v, ok := hexByte(s[2*i], s[2*i+1])
		if !ok {
			return false
		}
		dst[i] = v
	}
	return true
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexNibble(hi)
	l, ok2 := hexNibble(lo)
	return h<<4 | l, ok1 && ok2
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
