package accesslog

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/record"
)

// validRunes is what a JSON decoder should give back for s: each invalid
// UTF-8 byte read as U+FFFD.
func validRunes(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func fullLine() *line {
	rec := &record.Request{Start: time.Date(2026, 12, 3, 13, 4, 16, 123456789, time.UTC), RouteID: "kube_ns__web__a_example__prefix", Backend: "ns/web:80",
		Stop: record.StopBudget, BreakerSkips: 1, TraceID: "0af7651916cd43dd8448eb211c80319c"}
	a := rec.AddAttempt("10.0.0.1:8080", "closed", rec.Start)
	a.Duration, a.Error = 2*time.Millisecond, record.ErrConnect
	a = rec.AddAttempt("10.0.0.2:8080", "half-open", rec.Start.Add(3*time.Millisecond))
	a.Duration, a.Status = 1500*time.Microsecond, 503
	return &line{start: rec.Start, client: "192.0.2.1:5555", forwardedFor: []string{"198.51.100.7", "203.0.113.9"},
		method: "POST", host: "a.example", target: "/x/y?token=secret&b=2", proto: "HTTP/2.0", tls: true, status: 503,
		bytesIn: 12, bytesOut: 34, duration: 5*time.Millisecond + 250*time.Microsecond, rec: rec,
		objectKind: "ingress", objectNS: "ns", objectName: "web", requestID: "req-1", traceID: rec.TraceID, grpcStatus: "14"}
}

func TestJSONLine(t *testing.T) {
	b := appendJSON(nil, fullLine(), DefaultFields)
	if b[len(b)-1] != '\n' || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("not one line: %q", b)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	want := map[string]any{
		"time": "2026-12-03T13:04:16.123Z", "client": "192.0.2.1:5555", "forwarded_for": "198.51.100.7, 203.0.113.9",
		"method": "POST", "host": "a.example", "path": "/x/y", "proto": "HTTP/2.0", "tls": true, "status": 503.0,
		"bytes_in": 12.0, "bytes_out": 34.0, "duration": 0.00525, "header_time": 0.0045,
		"route": "kube_ns__web__a_example__prefix", "object": "ingress/ns/web", "backend": "ns/web:80",
		"retries": 1.0, "breaker_skips": 1.0, "stop": "budget", "request_id": "req-1",
		"trace_id": "0af7651916cd43dd8448eb211c80319c", "grpc_status": "14",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if _, ok := got["query"]; ok {
		t.Errorf("query logged though not asked for: %s", b)
	}
	attempts, _ := got["attempts"].([]any)
	if len(attempts) != 2 {
		t.Fatalf("attempts = %#v", got["attempts"])
	}
	first, second := attempts[0].(map[string]any), attempts[1].(map[string]any)
	if first["endpoint"] != "10.0.0.1:8080" || first["error"] != "connect" || first["duration"] != 0.002 || first["breaker"] != "closed" || first["status"] != nil {
		t.Errorf("first attempt = %#v", first)
	}
	if second["endpoint"] != "10.0.0.2:8080" || second["status"] != 503.0 || second["breaker"] != "half-open" || second["error"] != nil {
		t.Errorf("second attempt = %#v", second)
	}
	if len(got) != len(want)+1 {
		t.Errorf("%d fields, want %d: %s", len(got), len(want)+1, b)
	}

	// Chosen fields only, the query among them.
	f, err := ParseFields("status,query, path")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(appendJSON(nil, fullLine(), f)), `{"path":"/x/y","query":"token=secret&b=2","status":503}`+"\n"; got != want {
		t.Errorf("chosen fields: %s, want %s", got, want)
	}
}

func TestJSONLineWithoutRoute(t *testing.T) {
	l := &line{start: time.Unix(0, 0), method: "GET", host: "h", target: "/", proto: "HTTP/1.1", status: 404, rec: &record.Request{}}
	got := string(appendJSON(nil, l, DefaultFields))
	want := `{"time":"1970-01-01T00:00:00.000Z","client":"","method":"GET","host":"h","path":"/","proto":"HTTP/1.1","tls":false,"status":404,"bytes_in":0,"bytes_out":0,"duration":0.000000}` + "\n"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestTextLine(t *testing.T) {
	l := fullLine()
	l.target = `/a b"c=d` + "\x01\xff"
	got := string(appendText(nil, l, DefaultFields))
	for _, part := range []string{
		"time=2026-12-03T13:04:16.123Z ", "client=192.0.2.1:5555 ", `forwarded_for="198.51.100.7, 203.0.113.9" `,
		`path="/a b\"c=d\x01\xff" `, "status=503 ", "duration=0.005250 ", "object=ingress/ns/web ",
		"attempts=10.0.0.1:8080/connect/0.002000/closed,10.0.0.2:8080/503/0.001500/half-open ", "stop=budget ",
		"grpc_status=14\n",
	} {
		if !strings.Contains(got, part) {
			t.Errorf("%q missing from %s", part, got)
		}
	}
	if strings.Count(got, "\n") != 1 {
		t.Errorf("not one line: %q", got)
	}
}

func TestParseFields(t *testing.T) {
	if f, err := ParseFields("default,query"); err != nil || f != DefaultFields|FieldQuery {
		t.Errorf("default,query = %b, %v", f, err)
	}
	if f, err := ParseFields("all"); err != nil || f&FieldQuery == 0 || f&FieldGRPCStatus == 0 {
		t.Errorf("all = %b, %v", f, err)
	}
	for _, bad := range []string{"", "status,nope", " , "} {
		if _, err := ParseFields(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("format xml accepted")
	}
}

func TestAppendSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0.000000", time.Microsecond: "0.000001", 1234567 * time.Microsecond: "1.234567",
		90 * time.Second: "90.000000", -time.Millisecond: "-0.001000", 999: "0.000000"} {
		if got := string(appendSeconds(nil, d)); got != want {
			t.Errorf("%v: %s, want %s", d, got, want)
		}
	}
}

// FuzzJSONLine: whatever a client puts into the strings a line carries,
// the line is one valid JSON object that gives back those strings (invalid
// UTF-8 as U+FFFD).
func FuzzJSONLine(f *testing.F) {
	for _, s := range []string{"/", `/"quoted"\back`, "/ctl\x00\x01\x1f\x7f", "/bad\xff\xfe\xc3", "/\u2028\u2029", "/ünï©ødé", "\xed\xa0\x80", "<script>&"} {
		f.Add(s, "host\n", s)
	}
	f.Fuzz(func(t *testing.T, path, host, xff string) {
		l := &line{start: time.Unix(1, 0), client: host, forwardedFor: []string{xff}, method: path, host: host,
			target: path, proto: "HTTP/1.1", status: 200, rec: &record.Request{RouteID: xff, Backend: host}, requestID: path, traceID: xff}
		for _, fields := range []Fields{DefaultFields | FieldQuery} {
			b := appendJSON(nil, l, fields)
			if strings.Count(string(b), "\n") != 1 || b[len(b)-1] != '\n' {
				t.Fatalf("not one line: %q", b)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("invalid JSON %q: %v", b, err)
			}
			p, q := splitTarget(path)
			checks := map[string]string{"method": path, "host": host, "client": host, "path": p, "route": xff,
				"backend": host, "request_id": path, "trace_id": xff, "forwarded_for": xff}
			if q != "" {
				checks["query"] = q
			}
			for k, v := range checks {
				if v == "" {
					continue // left out
				}
				if got[k] != validRunes(v) {
					t.Errorf("%s = %q, want %q (line %q)", k, got[k], validRunes(v), b)
				}
			}
		}
	})
}
