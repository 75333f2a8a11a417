package tablestore

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/zalando/skipper/eskip"

	"github.com/bulkhead-router/bulkhead/routing"
)

const (
	// FormatName identifies a bulkhead route table snapshot; it is the
	// first value of the header line.
	FormatName = "bulkhead-route-table"
	// FormatVersion is the version of the file layout this build writes and
	// reads. Bump it when the header or the payload wrapper changes; field
	// changes of routing.Table and routing.Route are caught by the schema
	// fingerprint instead.
	FormatVersion = 1

	// maxHeaderBytes bounds the search for the header line.
	maxHeaderBytes = 4096
	// maxFileBytes bounds what Load reads: a larger file is not one of ours
	// (10,000 routes take a few MB).
	maxFileBytes = 512 << 20
)

// magic is how every snapshot begins: the header's first key and value and
// the second key. A file not starting with it is not a snapshot.
var magic = []byte(`{"format":"` + FormatName + `","version":`)

// header is the first line of a snapshot. Field order is the on-disk order;
// the line must be exactly what json.Marshal makes of it.
type header struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Schema fingerprints the Go types of the payload (see schema), so a
	// snapshot written by a build whose routing.Table differs is refused
	// instead of loading with fields silently zero.
	Schema        string    `json:"schema"`
	SavedAt       time.Time `json:"savedAt"`
	Routes        int       `json:"routes"`
	PayloadBytes  int       `json:"payloadBytes"`
	PayloadSHA256 string    `json:"payloadSHA256"`
}

// payload is the checksummed part. SavedAt repeats the header's so that
// the checksum covers it too.
type payload struct {
	SavedAt time.Time   `json:"savedAt"`
	Table   storedTable `json:"table"`
}

// storedTable is routing.Table with the routes replaced by storedRoutes.
// Embedding makes every other exported field of Table part of the file
// without listing it here; the round-trip test guards that this stays so.
type storedTable struct {
	Routes []storedRoute `json:"Routes"`
	routing.Table
}

// storedRoute is a routing.Route with its skipper route as eskip text
// (Route.Eskip is tagged json:"-"). Every other exported field of Route is
// promoted into the JSON object.
type storedRoute struct {
	Eskip string `json:"eskip"`
	routing.Route
}

// schema is the fingerprint of this build's payload types.
var schema = fingerprint(reflect.TypeFor[storedTable]())

// earlierSchemas are the payload schemas of earlier builds whose snapshots
// this build still reads: their tables differ from this build's only by
// fields added since, which decode as zero and mean there what the
// earlier build meant. A router upgraded during an API server outage then
// still starts from its stored table. Each has a stored file in testdata
// that a test loads.
var earlierSchemas = map[string]string{
	"4237ac2e2a0612e1": "before routing.Certificate.Ingress and Default (issue 16): Gateway certificates only",
	"8f6e38ce2d7f1b36": "before routing.GatewayOrigin.Kind (issue 16): HTTPRoutes only",
}

// fingerprint hashes the JSON-relevant shape of t: field names, JSON tags
// and types, recursively.
func fingerprint(t reflect.Type) string {
	var b strings.Builder
	writeSchema(&b, t, map[reflect.Type]bool{})
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

func writeSchema(b *strings.Builder, t reflect.Type, seen map[reflect.Type]bool) {
	for _, m := range []reflect.Type{jsonMarshaler, textMarshaler} {
		if t.Implements(m) || reflect.PointerTo(t).Implements(m) {
			b.WriteString(t.String()) // encoded by its own method
			return
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		b.WriteString("*")
		writeSchema(b, t.Elem(), seen)
	case reflect.Slice:
		b.WriteString("[]")
		writeSchema(b, t.Elem(), seen)
	case reflect.Array:
		fmt.Fprintf(b, "[%d]", t.Len())
		writeSchema(b, t.Elem(), seen)
	case reflect.Map:
		b.WriteString("map[")
		writeSchema(b, t.Key(), seen)
		b.WriteString("]")
		writeSchema(b, t.Elem(), seen)
	case reflect.Struct:
		if t.Name() != "" {
			b.WriteString(t.String())
		} else {
			b.WriteString("struct") // t.String() would list unexported fields
		}
		if seen[t] {
			return
		}
		seen[t] = true
		b.WriteString("{")
		for f := range t.Fields() {
			tag := f.Tag.Get("json")
			if (!f.IsExported() && !f.Anonymous) || tag == "-" {
				continue
			}
			fmt.Fprintf(b, "%s %q ", f.Name, tag)
			writeSchema(b, f.Type, seen)
			b.WriteString(";")
		}
		b.WriteString("}")
	default:
		b.WriteString(t.String())
	}
}

// encode renders t as a complete snapshot file. It fails, writing nothing,
// if a route has no eskip definition or would not parse back equal.
func encode(t routing.Table, savedAt time.Time) ([]byte, error) {
	data, _, err := encodeWith(t, savedAt, nil)
	return data, err
}

// encodeWith is encode with the texts of routes printed (and checked) by
// an earlier call: published eskip routes are never modified, and the
// translator hands over the same route objects for what did not change, so
// a table that changed in a few routes is printed in those few. It returns
// the texts of t's routes, for the next call.
func encodeWith(t routing.Table, savedAt time.Time, known map[*eskip.Route]string) ([]byte, map[*eskip.Route]string, error) {
	parts, next, err := encodeCached(t, savedAt, &encodeCache{texts: known, keepTexts: true})
	if err != nil {
		return nil, nil, err
	}
	return bytes.Join(parts, nil), next.texts, nil
}

// encodeCache is what a write keeps for the next: the JSON of each route
// and backend, by identity (published routes and endpoint lists are never
// modified). At 10,000 routes and backends, encoding them all again each
// second under churn was a sixth of the router's CPU. The eskip texts of
// the routes are kept only for encodeWith (keepTexts): a route's JSON
// holds its text, and keeping both cost 2.6 MB more at 10,000 routes.
type encodeCache struct {
	texts     map[*eskip.Route]string
	keepTexts bool
	routes    map[*eskip.Route][]byte
	backends  map[backendRef][]byte
	// file and data are the JSON the Store's last write put in its file
	// (fileCache), looked up where routes and backends have nothing.
	file *fileCache
	data []byte
	// spansOnly: the next cache is for a fileCache, which needs only the
	// JSON of each route and backend in t's order (routeFrags,
	// backendFrags), not the maps.
	spansOnly                bool
	routeFrags, backendFrags [][]byte
}

func (c *encodeCache) route(r *eskip.Route) ([]byte, bool) {
	if frag, ok := c.routes[r]; ok {
		return frag, true
	}
	if c.file != nil {
		if s, ok := c.file.routes[r]; ok {
			return c.data[s.at : s.at+s.n : s.at+s.n], true
		}
	}
	return nil, false
}

func (c *encodeCache) backend(ref backendRef) ([]byte, bool) {
	if frag, ok := c.backends[ref]; ok {
		return frag, true
	}
	if c.file != nil {
		if s, ok := c.file.backends[ref]; ok {
			return c.data[s.at : s.at+s.n : s.at+s.n], true
		}
	}
	return nil, false
}

// backendRef identifies a backend's value: its key and its endpoint list.
type backendRef struct {
	key   routing.BackendKey
	first *routing.Endpoint
	n     int
}

func refOf(b *routing.Backend) backendRef {
	r := backendRef{key: b.Key, n: len(b.Endpoints)}
	if len(b.Endpoints) > 0 {
		r.first = &b.Endpoints[0]
	}
	return r
}

// encodeCached is encodeWith with the JSON of routes and backends kept
// too, and the file returned as parts (their concatenation) that share the
// kept JSON: at 10,000 routes, putting the file together in one buffer
// copied it three times, about 20 MB of garbage a write, once a second
// under churn. The file is byte for byte what encoding the whole payload
// at once gives: the payload is encoded without its routes and backends,
// and their JSON, each element as the encoder writes it, is put in their
// place.
func encodeCached(t routing.Table, savedAt time.Time, known *encodeCache) ([][]byte, *encodeCache, error) {
	if known == nil {
		known = &encodeCache{}
	}
	next := &encodeCache{keepTexts: known.keepTexts, spansOnly: known.spansOnly}
	if !next.spansOnly {
		next.routes = make(map[*eskip.Route][]byte, len(t.Routes))
		next.backends = make(map[backendRef][]byte, len(t.Backends))
	}
	if next.keepTexts {
		next.texts = make(map[*eskip.Route]string, len(t.Routes))
	}
	savedAt = savedAt.UTC()
	var elem bytes.Buffer
	elemEnc := json.NewEncoder(&elem)
	elemEnc.SetEscapeHTML(false)
	encodeElem := func(v any) ([]byte, error) {
		elem.Reset()
		if err := elemEnc.Encode(v); err != nil {
			return nil, err
		}
		return bytes.Clone(bytes.TrimSuffix(elem.Bytes(), []byte("\n"))), nil
	}

	// The fragments first, then one buffer of their size: appending to a
	// growing buffer copied megabytes at every doubling.
	routeFrags := make([][]byte, len(t.Routes))
	for i, r := range t.Routes {
		frag, ok := known.route(r.Eskip)
		text, textOK := known.texts[r.Eskip]
		if !ok || next.keepTexts && !textOK {
			if !textOK {
				var err error
				if text, err = eskipText(r.Eskip); err != nil {
					return nil, nil, fmt.Errorf("tablestore: route %d: %w", i, err)
				}
			}
			sr := storedRoute{Eskip: text, Route: *r}
			sr.Route.Eskip = nil
			var err error
			if frag, err = encodeElem(sr); err != nil {
				return nil, nil, fmt.Errorf("tablestore: encoding route %d: %w", i, err)
			}
		}
		if next.keepTexts {
			next.texts[r.Eskip] = text
		}
		if !next.spansOnly {
			next.routes[r.Eskip] = frag
		}
		routeFrags[i] = frag
	}
	backendFrags := make([][]byte, len(t.Backends))
	for i := range t.Backends {
		ref := refOf(&t.Backends[i])
		frag, ok := known.backend(ref)
		if !ok {
			var err error
			if frag, err = encodeElem(t.Backends[i]); err != nil {
				return nil, nil, fmt.Errorf("tablestore: encoding backend %s: %w", t.Backends[i].Key, err)
			}
		}
		if !next.spansOnly {
			next.backends[ref] = frag
		}
		backendFrags[i] = frag
	}
	next.routeFrags, next.backendFrags = routeFrags, backendFrags
	routes, backends := jsonArray(t.Routes != nil, routeFrags), jsonArray(t.Backends != nil, backendFrags)

	p := payload{SavedAt: savedAt, Table: storedTable{Table: t}}
	p.Table.Table.Routes, p.Table.Table.Backends = nil, nil
	var skeleton bytes.Buffer
	enc := json.NewEncoder(&skeleton) // Encode ends the payload with a newline
	enc.SetEscapeHTML(false)          // keep <shunt> and "->" readable
	if err := enc.Encode(p); err != nil {
		return nil, nil, fmt.Errorf("tablestore: encoding the table: %w", err)
	}
	body, err := splice(skeleton.Bytes(), routes, backends)
	if err != nil {
		return nil, nil, err
	}
	sum, size := sha256.New(), 0
	for _, part := range body {
		sum.Write(part)
		size += len(part)
	}
	h := header{
		Format:        FormatName,
		Version:       FormatVersion,
		Schema:        schema,
		SavedAt:       savedAt,
		Routes:        len(t.Routes),
		PayloadBytes:  size,
		PayloadSHA256: hex.EncodeToString(sum.Sum(nil)),
	}
	line, err := json.Marshal(h)
	if err != nil {
		return nil, nil, fmt.Errorf("tablestore: encoding the header: %w", err)
	}
	return append([][]byte{append(line, '\n')}, body...), next, nil
}

// The punctuation between the parts of the file.
var (
	jsonNull  = []byte("null")
	jsonOpen  = []byte("[")
	jsonComma = []byte(",")
	jsonClose = []byte("]")
)

// jsonArray is the JSON array of the encoded elements, as parts; null
// when there is no slice.
func jsonArray(some bool, frags [][]byte) [][]byte {
	if !some {
		return [][]byte{jsonNull}
	}
	out := make([][]byte, 0, 2*len(frags)+1)
	out = append(out, jsonOpen)
	for i, f := range frags {
		if i > 0 {
			out = append(out, jsonComma)
		}
		out = append(out, f)
	}
	return append(out, jsonClose)
}

// splice puts the routes and backends (as parts, "null" for none) into the
// payload encoded without them, and returns it as parts, copying nothing: its table begins with "Routes":null (the
// first field of routing.Table) and has "Backends":null as a field of its
// own, wherever it stands (fields after it, such as Certificates, are
// encoded in the skeleton). The last occurrence is the table's: the
// fields encoded in the skeleton hold strings, where a quote is escaped,
// and numbers and base64, so none can contain `"Backends":null` followed
// by a "," or "}" of its own.
func splice(skeleton []byte, routes, backends [][]byte) ([][]byte, error) {
	routesAt := []byte(`"table":{"Routes":null`)
	backendsAt := []byte(`,"Backends":null`)
	i := bytes.Index(skeleton, routesAt)
	j := bytes.LastIndex(skeleton, backendsAt)
	if i < 0 || j < i || j+len(backendsAt) >= len(skeleton) ||
		skeleton[j+len(backendsAt)] != ',' && skeleton[j+len(backendsAt)] != '}' {
		return nil, errors.New("tablestore: the payload's layout is not the expected one")
	}
	i += len(routesAt) - len("null")
	j += len(`,"Backends":`)
	out := make([][]byte, 0, len(routes)+len(backends)+3)
	out = append(out, skeleton[:i])
	out = append(out, routes...)
	out = append(out, skeleton[i+len("null"):j])
	out = append(out, backends...)
	return append(out, skeleton[j+len("null"):]), nil
}

// eskipText prints r as an eskip definition (with its ID) and checks that
// skipper's parser gives back an equal route.
func eskipText(r *eskip.Route) (string, error) {
	if r == nil {
		return "", errors.New("no eskip route")
	}
	want, err := forComparison(r)
	if err != nil {
		return "", fmt.Errorf("eskip route %q: %w", r.Id, err)
	}
	text := eskip.String(r)
	got, err := parseOne(text)
	if err != nil {
		return "", fmt.Errorf("eskip route %q does not parse back: %w", r.Id, err)
	}
	if got, err = forComparison(got); err != nil || !eskip.Eq(want, got) {
		return "", fmt.Errorf("eskip route %q does not parse back equal: %s", r.Id, text)
	}
	return text, nil
}

func parseOne(text string) (*eskip.Route, error) {
	rs, err := eskip.Parse(text)
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 {
		return nil, fmt.Errorf("%d routes instead of one", len(rs))
	}
	return rs[0], nil
}

// forComparison returns the canonical form of r (see eskip.Canonical) made
// fit for eskip.Eq:
//   - numeric predicate and filter arguments become float64, the type
//     eskip's parser produces (routing emits ints, e.g. status(503)); Eq
//     compares arguments with ==, which tells int(503) from float64(503);
//   - predicates are ordered by name and then arguments: Canonical orders
//     them by name only, and puts those from the Headers map in map order,
//     so two Header predicates would compare unequal at random.
//
// Arguments other than strings and numbers are refused: they could not be
// printed and parsed back as themselves, and Eq panics on uncomparable ones.
func forComparison(r *eskip.Route) (*eskip.Route, error) {
	c := eskip.Canonical(r) // new Predicates slice; elements and Filters shared with r
	for i, p := range c.Predicates {
		args, err := normalizeArgs(p.Args)
		if err != nil {
			return nil, fmt.Errorf("predicate %s: %w", p.Name, err)
		}
		if args != nil {
			c.Predicates[i] = &eskip.Predicate{Name: p.Name, Args: args}
		}
	}
	cloned := false
	for i, f := range c.Filters {
		args, err := normalizeArgs(f.Args)
		if err != nil {
			return nil, fmt.Errorf("filter %s: %w", f.Name, err)
		}
		if args != nil {
			if !cloned {
				c.Filters, cloned = slices.Clone(c.Filters), true // r's own
			}
			c.Filters[i] = &eskip.Filter{Name: f.Name, Args: args}
		}
	}
	for i := 1; i < len(c.Predicates); i++ {
		if c.Predicates[i].Name == c.Predicates[i-1].Name {
			slices.SortStableFunc(c.Predicates, func(a, b *eskip.Predicate) int {
				return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(fmt.Sprint(a.Args...), fmt.Sprint(b.Args...)))
			})
			break
		}
	}
	return c, nil
}

// normalizeArgs returns args with numbers as float64, or nil if they are
// already so.
func normalizeArgs(args []any) ([]any, error) {
	var out []any
	for i, a := range args {
		var f float64
		switch v := a.(type) {
		case string, float64:
			if out != nil {
				out[i] = a
			}
			continue
		case int:
			f = float64(v)
		case int8:
			f = float64(v)
		case int16:
			f = float64(v)
		case int32:
			f = float64(v)
		case int64:
			f = float64(v)
		case uint:
			f = float64(v)
		case uint8:
			f = float64(v)
		case uint16:
			f = float64(v)
		case uint32:
			f = float64(v)
		case uint64:
			f = float64(v)
		case float32:
			f = float64(v)
		default:
			return nil, fmt.Errorf("argument %d has type %T, which eskip text cannot carry", i, a)
		}
		if out == nil {
			out = slices.Clone(args)
		}
		out[i] = f
	}
	return out, nil
}

// corrupt builds the error for an unusable snapshot; Path is set by Load.
func corrupt(kind LoadErrorKind, err error, format string, args ...any) *CorruptError {
	return &CorruptError{Kind: kind, Reason: fmt.Sprintf(format, args...), Err: err}
}

// decode checks and parses a complete snapshot file. It returns either the
// whole table or a *CorruptError, never a partial table.
func decode(data []byte) (routing.Table, header, *CorruptError) {
	var none routing.Table
	if len(data) == 0 {
		return none, header{}, corrupt(KindTruncated, nil, "truncated: empty file")
	}
	if !bytes.HasPrefix(data, magic) {
		if bytes.HasPrefix(magic, data) {
			return none, header{}, corrupt(KindTruncated, nil, "truncated: %d bytes, within the header", len(data))
		}
		return none, header{}, corrupt(KindForeign, nil, "not a bulkhead snapshot (does not start with %s)", magic)
	}
	nl := bytes.IndexByte(data[:min(len(data), maxHeaderBytes)], '\n')
	if nl < 0 {
		if len(data) < maxHeaderBytes {
			return none, header{}, corrupt(KindTruncated, nil, "truncated: %d bytes, within the header", len(data))
		}
		return none, header{}, corrupt(KindMalformed, nil, "malformed header: no line end within %d bytes", maxHeaderBytes)
	}
	line := data[:nl]

	// Format and version first, leniently: a later version may have other
	// header fields, and must be reported as such.
	var id struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(line, &id); err != nil {
		return none, header{}, corrupt(KindMalformed, err, "malformed header: %v", err)
	}
	if id.Format != FormatName {
		return none, header{}, corrupt(KindForeign, nil, "not a bulkhead snapshot (format %q)", id.Format)
	}
	if id.Version != FormatVersion {
		return none, header{}, corrupt(KindVersion, nil, "unknown format version %d (this build reads %d)", id.Version, FormatVersion)
	}

	var h header
	if err := strictUnmarshal(line, &h); err != nil {
		return none, header{}, corrupt(KindMalformed, err, "malformed header: %v", err)
	}
	// Canonical form: any changed byte in the header that still decodes
	// (a key's case, an escape, a time zone) is caught here.
	if canon, err := json.Marshal(h); err != nil || !bytes.Equal(canon, line) {
		return none, header{}, corrupt(KindMalformed, err, "malformed header: not in the form this build writes")
	}
	if _, earlier := earlierSchemas[h.Schema]; h.Schema != schema && !earlier {
		return none, header{}, corrupt(KindVersion, nil, "unknown table schema %s (this build reads %s)", h.Schema, schema)
	}

	body := data[nl+1:]
	switch {
	case len(body) < h.PayloadBytes:
		return none, header{}, corrupt(KindTruncated, nil, "truncated: payload has %d of %d bytes", len(body), h.PayloadBytes)
	case len(body) > h.PayloadBytes:
		return none, header{}, corrupt(KindMalformed, nil, "malformed: %d bytes after the %d-byte payload", len(body)-h.PayloadBytes, h.PayloadBytes)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != h.PayloadSHA256 {
		return none, header{}, corrupt(KindChecksum, nil, "checksum mismatch: payload SHA-256 is %s, header says %s", got, h.PayloadSHA256)
	}

	// From here on the bytes are the ones written; failures mean a writer
	// bug or a deliberately edited file.
	var p payload
	if err := strictUnmarshal(body, &p); err != nil {
		return none, header{}, corrupt(KindMalformed, err, "malformed payload: %v", err)
	}
	if !p.SavedAt.Equal(h.SavedAt) || len(p.Table.Routes) != h.Routes {
		return none, header{}, corrupt(KindMalformed, nil, "malformed: header (%d routes, saved %s) does not match payload (%d routes, saved %s)",
			h.Routes, h.SavedAt.Format(time.RFC3339Nano), len(p.Table.Routes), p.SavedAt.Format(time.RFC3339Nano))
	}
	t := p.Table.Table
	if p.Table.Routes != nil {
		t.Routes = make([]*routing.Route, len(p.Table.Routes))
	}
	for i, sr := range p.Table.Routes {
		r, err := parseOne(sr.Eskip)
		if err != nil {
			return none, header{}, corrupt(KindMalformed, err, "malformed: route %d: eskip: %v", i, err)
		}
		// Each its own: a route kept while later tables replace the
		// others keeps nothing else of the decoded file alive.
		rt := sr.Route
		rt.Eskip = r
		t.Routes[i] = &rt
	}
	return t, h, nil
}

// strictUnmarshal is json.Unmarshal refusing unknown fields and anything
// but white space after the value.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}
