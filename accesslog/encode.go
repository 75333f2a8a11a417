package accesslog

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bulkhead-router/bulkhead/record"
)

// Format is how a line is written.
type Format int

const (
	// JSON: one JSON object per line.
	JSON Format = iota
	// Text: logfmt, key=value pairs, values quoted where they must be.
	Text
)

// ParseFormat reads "json" or "text".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "json":
		return JSON, nil
	case "text":
		return Text, nil
	}
	return 0, fmt.Errorf("unknown access log format %q (want json or text)", s)
}

// Fields selects the fields of a line, one bit each.
type Fields uint32

const (
	FieldTime         Fields = 1 << iota // when the request arrived, UTC, milliseconds
	FieldClient                          // the TCP peer, ip:port
	FieldForwardedFor                    // X-Forwarded-For as received: what the client claims, not checked
	FieldMethod
	FieldHost
	FieldPath  // the request target's path as sent, without the query
	FieldQuery // the query string: may hold secrets (tokens in URLs), so off by default
	FieldProto // HTTP/1.1 or HTTP/2.0, and tls (true or false)
	FieldStatus
	FieldBytesIn      // request body bytes read
	FieldBytesOut     // response body bytes written
	FieldDuration     // seconds from arrival to the end of the answer
	FieldHeaderTime   // seconds from arrival to the pod's response headers
	FieldRoute        // skipper's route id
	FieldObject       // the Ingress, HTTPRoute or GRPCRoute the route came from: kind/namespace/name
	FieldBackend      // namespace/service:port
	FieldAttempts     // every attempt toward a pod: endpoint, status or error, seconds, breaker
	FieldRetries      // attempts after the first
	FieldBreakerSkips // endpoints passed over because their breaker was open
	FieldStop         // why a failed attempt was not retried
	FieldRequestID    // X-Request-Id
	FieldTraceID      // W3C trace id
	FieldGRPCStatus   // grpc-status of a gRPC call (trailers, or a trailers-only answer)

	fieldCount = iota
)

// fieldNames are the keys of the fields, in the order lines carry them.
var fieldNames = [fieldCount]string{
	"time", "client", "forwarded_for", "method", "host", "path", "query", "proto", "status",
	"bytes_in", "bytes_out", "duration", "header_time", "route", "object", "backend", "attempts",
	"retries", "breaker_skips", "stop", "request_id", "trace_id", "grpc_status",
}

// DefaultFields is every field but the query string.
const DefaultFields = Fields(1<<fieldCount-1) &^ FieldQuery

// ParseFields reads a comma-separated list of field names; "default" is
// DefaultFields, "all" every field, and "default,query" adds the query.
func ParseFields(s string) (Fields, error) {
	var f Fields
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		switch name {
		case "":
			continue
		case "default":
			f |= DefaultFields
			continue
		case "all":
			f |= 1<<fieldCount - 1
			continue
		}
		i := indexOf(name)
		if i < 0 {
			return 0, fmt.Errorf("unknown access log field %q (known: default, all, %s)", name, strings.Join(fieldNames[:], ", "))
		}
		f |= 1 << i
	}
	if f == 0 {
		return 0, fmt.Errorf("no access log field chosen in %q", s)
	}
	return f, nil
}

func indexOf(name string) int {
	for i, n := range fieldNames {
		if n == name {
			return i
		}
	}
	return -1
}

// line is what one line says, gathered by the handler once the request
// is done. Strings refer to the request's own memory: nothing is copied
// until the line is encoded.
type line struct {
	start        time.Time
	client       string
	forwardedFor []string
	method       string
	host         string
	target       string // the request target as sent (RequestURI)
	proto        string
	tls          bool
	status       int
	bytesIn      int64
	bytesOut     int64
	duration     time.Duration
	rec          *record.Request
	objectKind   string // ingress, httproute or grpcroute; empty when unknown
	objectNS     string
	objectName   string
	requestID    string
	traceID      string
	grpcStatus   string
}

// splitTarget splits a request target into its path and query.
func splitTarget(t string) (path, query string) {
	if i := strings.IndexByte(t, '?'); i >= 0 {
		return t[:i], t[i+1:]
	}
	return t, ""
}

// appendJSON appends l as a JSON object and a newline. Fields without a
// value (no route, no attempt, no trace) are left out.
func appendJSON(b []byte, l *line, f Fields) []byte { return appendLine(b, l, f, true) }

// appendText appends l as logfmt (key=value ...) and a newline, the same
// keys and omissions as appendJSON. Attempts are one value:
// endpoint/status-or-error/seconds/breaker, comma-separated.
func appendText(b []byte, l *line, f Fields) []byte { return appendLine(b, l, f, false) }

// lineWriter appends one line's fields in JSON or logfmt: the key, its
// separator and the value's quoting are the only differences between the
// two for most fields.
type lineWriter struct {
	b     []byte
	json  bool
	first bool
}

func (w *lineWriter) key(k string) {
	if !w.first {
		if w.json {
			w.b = append(w.b, ',')
		} else {
			w.b = append(w.b, ' ')
		}
	}
	w.first = false
	if w.json {
		w.b = append(w.b, '"')
		w.b = append(w.b, k...)
		w.b = append(w.b, '"', ':')
		return
	}
	w.b = append(w.b, k...)
	w.b = append(w.b, '=')
}

func (w *lineWriter) str(k, v string) {
	w.key(k)
	if w.json {
		w.b = appendJSONString(w.b, v)
	} else {
		w.b = appendTextValue(w.b, v)
	}
}

func (w *lineWriter) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *lineWriter) seconds(k string, d time.Duration) {
	w.key(k)
	w.b = appendSeconds(w.b, d)
}

// appendLine appends l in JSON (asJSON) or logfmt, then a newline.
func appendLine(b []byte, l *line, f Fields, asJSON bool) []byte {
	w := lineWriter{b: b, json: asJSON, first: true}
	if asJSON {
		w.b = append(w.b, '{')
	}
	path, query := splitTarget(l.target)
	rec := l.rec
	if f&FieldTime != 0 {
		w.key("time")
		if asJSON {
			w.b = append(w.b, '"')
		}
		w.b = l.start.UTC().AppendFormat(w.b, "2006-01-02T15:04:05.000Z07:00")
		if asJSON {
			w.b = append(w.b, '"')
		}
	}
	if f&FieldClient != 0 {
		w.str("client", l.client)
	}
	if f&FieldForwardedFor != 0 && len(l.forwardedFor) > 0 {
		if asJSON {
			w.key("forwarded_for")
			w.b = append(w.b, '"')
			for i, v := range l.forwardedFor {
				if i > 0 {
					w.b = append(w.b, ',', ' ')
				}
				w.b = appendJSONEscaped(w.b, v)
			}
			w.b = append(w.b, '"')
		} else {
			v := l.forwardedFor[0]
			if len(l.forwardedFor) > 1 {
				v = strings.Join(l.forwardedFor, ", ") // rare: the header sent more than once
			}
			w.str("forwarded_for", v)
		}
	}
	if f&FieldMethod != 0 {
		w.str("method", l.method)
	}
	if f&FieldHost != 0 {
		w.str("host", l.host)
	}
	if f&FieldPath != 0 {
		w.str("path", path)
	}
	if f&FieldQuery != 0 && query != "" {
		w.str("query", query)
	}
	if f&FieldProto != 0 {
		w.str("proto", l.proto)
		w.key("tls")
		w.b = strconv.AppendBool(w.b, l.tls)
	}
	if f&FieldStatus != 0 {
		w.int("status", int64(l.status))
	}
	if f&FieldBytesIn != 0 {
		w.int("bytes_in", l.bytesIn)
	}
	if f&FieldBytesOut != 0 {
		w.int("bytes_out", l.bytesOut)
	}
	if f&FieldDuration != 0 {
		w.seconds("duration", l.duration)
	}
	if f&FieldHeaderTime != 0 {
		if ht := rec.HeaderTime(); ht > 0 {
			w.seconds("header_time", ht)
		}
	}
	if f&FieldRoute != 0 && rec.RouteID != "" {
		w.str("route", rec.RouteID)
	}
	if f&FieldObject != 0 && l.objectKind != "" {
		w.key("object")
		if asJSON {
			w.b = append(w.b, '"')
			w.b = append(w.b, l.objectKind...)
			w.b = append(w.b, '/')
			w.b = appendJSONEscaped(w.b, l.objectNS)
			w.b = append(w.b, '/')
			w.b = appendJSONEscaped(w.b, l.objectName)
			w.b = append(w.b, '"')
		} else {
			// Kubernetes names and namespaces are DNS labels: nothing to quote.
			w.b = append(w.b, l.objectKind...)
			w.b = append(w.b, '/')
			w.b = append(w.b, l.objectNS...)
			w.b = append(w.b, '/')
			w.b = append(w.b, l.objectName...)
		}
	}
	if f&FieldBackend != 0 && rec.Backend != "" {
		w.str("backend", rec.Backend)
	}
	if f&FieldAttempts != 0 && len(rec.Attempts) > 0 {
		w.key("attempts")
		if asJSON {
			w.b = appendAttemptsJSON(w.b, rec.Attempts)
		} else {
			w.b = appendAttemptsText(w.b, rec.Attempts)
		}
	}
	if f&FieldRetries != 0 && len(rec.Attempts) > 0 {
		w.int("retries", int64(rec.Retries()))
	}
	if f&FieldBreakerSkips != 0 && rec.BreakerSkips > 0 {
		w.int("breaker_skips", int64(rec.BreakerSkips))
	}
	if f&FieldStop != 0 && rec.Stop != "" {
		w.str("stop", string(rec.Stop))
	}
	if f&FieldRequestID != 0 && l.requestID != "" {
		w.str("request_id", l.requestID)
	}
	if f&FieldTraceID != 0 && l.traceID != "" {
		w.str("trace_id", l.traceID)
	}
	if f&FieldGRPCStatus != 0 && l.grpcStatus != "" {
		w.str("grpc_status", l.grpcStatus)
	}
	if asJSON {
		w.b = append(w.b, '}')
	}
	return append(w.b, '\n')
}

// appendAttemptsJSON appends the attempts as a JSON array of objects.
func appendAttemptsJSON(b []byte, attempts []record.Attempt) []byte {
	b = append(b, '[')
	for i := range attempts {
		a := &attempts[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"endpoint":`...)
		b = appendJSONString(b, a.Endpoint)
		if a.Status != 0 {
			b = append(b, `,"status":`...)
			b = strconv.AppendInt(b, int64(a.Status), 10)
		}
		if a.Error != "" {
			b = append(b, `,"error":`...)
			b = appendJSONString(b, string(a.Error))
		}
		b = append(b, `,"duration":`...)
		b = appendSeconds(b, a.Duration)
		if a.Breaker != "" {
			b = append(b, `,"breaker":`...)
			b = appendJSONString(b, a.Breaker)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendAttemptsText appends the attempts as one logfmt value.
func appendAttemptsText(b []byte, attempts []record.Attempt) []byte {
	for i := range attempts {
		a := &attempts[i]
		if i > 0 {
			b = append(b, ',')
		}
		// Endpoints are ip:port and the rest our own words: no space,
		// quote or '=' to escape.
		b = append(b, a.Endpoint...)
		b = append(b, '/')
		if a.Status != 0 {
			b = strconv.AppendInt(b, int64(a.Status), 10)
		} else {
			b = append(b, a.Error...)
		}
		b = append(b, '/')
		b = appendSeconds(b, a.Duration)
		b = append(b, '/')
		b = append(b, a.Breaker...)
	}
	return b
}

// appendSeconds appends d in seconds with microsecond precision
// (0.001234), without floating point.
func appendSeconds(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1e6, 10)
	frac := us % 1e6
	b = append(b, '.')
	for div := int64(1e5); div > 0; div /= 10 {
		b = append(b, byte('0'+frac/div%10))
	}
	return b
}

// appendJSONString appends s as a JSON string, quotes included.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendJSONEscaped(b, s)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONEscaped appends s escaped for a JSON string: quotes,
// backslashes and control bytes escaped, invalid UTF-8 replaced by
// U+FFFD, and U+2028 and U+2029 escaped (JavaScript reads them as line
// ends). Whatever a client sends (paths, hosts, headers are its bytes),
// the line stays one valid JSON object.
func appendJSONEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// appendTextValue appends a logfmt value: as it is when it holds only
// printable ASCII other than space, '"' and '=', else quoted the way Go
// quotes strings (control bytes and invalid UTF-8 as escapes).
func appendTextValue(b []byte, s string) []byte {
	if s == "" {
		return append(b, '"', '"')
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '"' || c == '=' || c >= 0x7f {
			return strconv.AppendQuote(b, s)
		}
	}
	return append(b, s...)
}
