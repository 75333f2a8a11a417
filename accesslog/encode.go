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
func appendJSON(b []byte, l *line, f Fields) []byte {
	b = append(b, '{')
	first := true
	key := func(b []byte, k string) []byte {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, k...)
		return append(b, '"', ':')
	}
	str := func(b []byte, k, v string) []byte {
		b = key(b, k)
		return appendJSONString(b, v)
	}
	path, query := splitTarget(l.target)
	rec := l.rec
	if f&FieldTime != 0 {
		b = key(b, "time")
		b = append(b, '"')
		b = l.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, '"')
	}
	if f&FieldClient != 0 {
		b = str(b, "client", l.client)
	}
	if f&FieldForwardedFor != 0 && len(l.forwardedFor) > 0 {
		b = key(b, "forwarded_for")
		b = append(b, '"')
		for i, v := range l.forwardedFor {
			if i > 0 {
				b = append(b, ',', ' ')
			}
			b = appendJSONEscaped(b, v)
		}
		b = append(b, '"')
	}
	if f&FieldMethod != 0 {
		b = str(b, "method", l.method)
	}
	if f&FieldHost != 0 {
		b = str(b, "host", l.host)
	}
	if f&FieldPath != 0 {
		b = str(b, "path", path)
	}
	if f&FieldQuery != 0 && query != "" {
		b = str(b, "query", query)
	}
	if f&FieldProto != 0 {
		b = str(b, "proto", l.proto)
		b = key(b, "tls")
		b = strconv.AppendBool(b, l.tls)
	}
	if f&FieldStatus != 0 {
		b = key(b, "status")
		b = strconv.AppendInt(b, int64(l.status), 10)
	}
	if f&FieldBytesIn != 0 {
		b = key(b, "bytes_in")
		b = strconv.AppendInt(b, l.bytesIn, 10)
	}
	if f&FieldBytesOut != 0 {
		b = key(b, "bytes_out")
		b = strconv.AppendInt(b, l.bytesOut, 10)
	}
	if f&FieldDuration != 0 {
		b = key(b, "duration")
		b = appendSeconds(b, l.duration)
	}
	if f&FieldHeaderTime != 0 {
		if ht := rec.HeaderTime(); ht > 0 {
			b = key(b, "header_time")
			b = appendSeconds(b, ht)
		}
	}
	if f&FieldRoute != 0 && rec.RouteID != "" {
		b = str(b, "route", rec.RouteID)
	}
	if f&FieldObject != 0 && l.objectKind != "" {
		b = key(b, "object")
		b = append(b, '"')
		b = append(b, l.objectKind...)
		b = append(b, '/')
		b = appendJSONEscaped(b, l.objectNS)
		b = append(b, '/')
		b = appendJSONEscaped(b, l.objectName)
		b = append(b, '"')
	}
	if f&FieldBackend != 0 && rec.Backend != "" {
		b = str(b, "backend", rec.Backend)
	}
	if f&FieldAttempts != 0 && len(rec.Attempts) > 0 {
		b = key(b, "attempts")
		b = append(b, '[')
		for i := range rec.Attempts {
			a := &rec.Attempts[i]
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
		b = append(b, ']')
	}
	if f&FieldRetries != 0 && len(rec.Attempts) > 0 {
		b = key(b, "retries")
		b = strconv.AppendInt(b, int64(rec.Retries()), 10)
	}
	if f&FieldBreakerSkips != 0 && rec.BreakerSkips > 0 {
		b = key(b, "breaker_skips")
		b = strconv.AppendInt(b, int64(rec.BreakerSkips), 10)
	}
	if f&FieldStop != 0 && rec.Stop != "" {
		b = str(b, "stop", string(rec.Stop))
	}
	if f&FieldRequestID != 0 && l.requestID != "" {
		b = str(b, "request_id", l.requestID)
	}
	if f&FieldTraceID != 0 && l.traceID != "" {
		b = str(b, "trace_id", l.traceID)
	}
	if f&FieldGRPCStatus != 0 && l.grpcStatus != "" {
		b = str(b, "grpc_status", l.grpcStatus)
	}
	return append(b, '}', '\n')
}

// appendText appends l as logfmt (key=value ...) and a newline, the same
// keys and omissions as appendJSON. Attempts are one value:
// endpoint/status-or-error/seconds/breaker, comma-separated.
func appendText(b []byte, l *line, f Fields) []byte {
	first := true
	key := func(b []byte, k string) []byte {
		if !first {
			b = append(b, ' ')
		}
		first = false
		b = append(b, k...)
		return append(b, '=')
	}
	str := func(b []byte, k, v string) []byte {
		b = key(b, k)
		return appendTextValue(b, v)
	}
	path, query := splitTarget(l.target)
	rec := l.rec
	if f&FieldTime != 0 {
		b = key(b, "time")
		b = l.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	if f&FieldClient != 0 {
		b = str(b, "client", l.client)
	}
	if f&FieldForwardedFor != 0 && len(l.forwardedFor) > 0 {
		v := l.forwardedFor[0]
		if len(l.forwardedFor) > 1 {
			v = strings.Join(l.forwardedFor, ", ") // rare: the header sent more than once
		}
		b = str(b, "forwarded_for", v)
	}
	if f&FieldMethod != 0 {
		b = str(b, "method", l.method)
	}
	if f&FieldHost != 0 {
		b = str(b, "host", l.host)
	}
	if f&FieldPath != 0 {
		b = str(b, "path", path)
	}
	if f&FieldQuery != 0 && query != "" {
		b = str(b, "query", query)
	}
	if f&FieldProto != 0 {
		b = str(b, "proto", l.proto)
		b = key(b, "tls")
		b = strconv.AppendBool(b, l.tls)
	}
	if f&FieldStatus != 0 {
		b = key(b, "status")
		b = strconv.AppendInt(b, int64(l.status), 10)
	}
	if f&FieldBytesIn != 0 {
		b = key(b, "bytes_in")
		b = strconv.AppendInt(b, l.bytesIn, 10)
	}
	if f&FieldBytesOut != 0 {
		b = key(b, "bytes_out")
		b = strconv.AppendInt(b, l.bytesOut, 10)
	}
	if f&FieldDuration != 0 {
		b = key(b, "duration")
		b = appendSeconds(b, l.duration)
	}
	if f&FieldHeaderTime != 0 {
		if ht := rec.HeaderTime(); ht > 0 {
			b = key(b, "header_time")
			b = appendSeconds(b, ht)
		}
	}
	if f&FieldRoute != 0 && rec.RouteID != "" {
		b = str(b, "route", rec.RouteID)
	}
	if f&FieldObject != 0 && l.objectKind != "" {
		b = key(b, "object")
		// Kubernetes names and namespaces are DNS labels: nothing to quote.
		b = append(b, l.objectKind...)
		b = append(b, '/')
		b = append(b, l.objectNS...)
		b = append(b, '/')
		b = append(b, l.objectName...)
	}
	if f&FieldBackend != 0 && rec.Backend != "" {
		b = str(b, "backend", rec.Backend)
	}
	if f&FieldAttempts != 0 && len(rec.Attempts) > 0 {
		b = key(b, "attempts")
		for i := range rec.Attempts {
			a := &rec.Attempts[i]
			if i > 0 {
				b = append(b, ',')
			}
			// Endpoints are ip:port and the rest our own words: no
			// space, quote or '=' to escape.
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
	}
	if f&FieldRetries != 0 && len(rec.Attempts) > 0 {
		b = key(b, "retries")
		b = strconv.AppendInt(b, int64(rec.Retries()), 10)
	}
	if f&FieldBreakerSkips != 0 && rec.BreakerSkips > 0 {
		b = key(b, "breaker_skips")
		b = strconv.AppendInt(b, int64(rec.BreakerSkips), 10)
	}
	if f&FieldStop != 0 && rec.Stop != "" {
		b = str(b, "stop", string(rec.Stop))
	}
	if f&FieldRequestID != 0 && l.requestID != "" {
		b = str(b, "request_id", l.requestID)
	}
	if f&FieldTraceID != 0 && l.traceID != "" {
		b = str(b, "trace_id", l.traceID)
	}
	if f&FieldGRPCStatus != 0 && l.grpcStatus != "" {
		b = str(b, "grpc_status", l.grpcStatus)
	}
	return append(b, '\n')
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
