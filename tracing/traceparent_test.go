package tracing

import (
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestTraceparentRoundTrip(t *testing.T) {
	tid := trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c}
	sid := trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31}
	for _, sampled := range []bool{false, true} {
		var buf [traceparentLen]byte
		formatTraceparent(&buf, tid, sid, sampled)
		in := parseTraceparent([]string{string(buf[:])})
		if !in.ok || in.traceID != tid || in.spanID != sid || in.sampled != sampled {
			t.Errorf("%s: %+v", buf, in)
		}
	}
}

func TestParseTraceparent(t *testing.T) {
	const ok = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, s := range []string{ok, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
		"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future", "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"} {
		if !parseTraceparent([]string{s}).ok {
			t.Errorf("%q refused", s)
		}
	}
	for _, v := range [][]string{nil, {ok, ok}, {""},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"}, // version 00 has nothing after
		{"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"}, // upper case
		{"00-00000000000000000000000000000000-b7ad6b7169203331-01"},
		{"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g"},
		{"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x"},
	} {
		if parseTraceparent(v).ok {
			t.Errorf("%q accepted", v)
		}
	}
}

func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	f.Add("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x")
	f.Fuzz(func(t *testing.T, s string) {
		in := parseTraceparent([]string{s})
		if !in.ok {
			return
		}
		var buf [traceparentLen]byte
		formatTraceparent(&buf, in.traceID, in.spanID, in.sampled)
		if back := parseTraceparent([]string{string(buf[:])}); back != in {
			t.Errorf("%q -> %+v -> %s -> %+v", s, in, buf, back)
		}
	})
}
