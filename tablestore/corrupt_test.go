package tablestore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reseal rebuilds a file from a header and payload edited by a test, with
// length and checksum recomputed: the damage is then only in the content.
func reseal(t *testing.T, data []byte, editHeader func(string) string, editPayload func(string) string) []byte {
	t.Helper()
	nl := bytes.IndexByte(data, '\n')
	head, body := string(data[:nl]), string(data[nl+1:])
	if editPayload != nil {
		body = editPayload(body)
	}
	var h header
	if err := strictUnmarshal([]byte(head), &h); err != nil {
		t.Fatal(err)
	}
	oldLen, oldSum := fmt.Sprintf(`"payloadBytes":%d`, h.PayloadBytes), h.PayloadSHA256
	sum := sha256.Sum256([]byte(body))
	head = strings.Replace(head, oldLen, fmt.Sprintf(`"payloadBytes":%d`, len(body)), 1)
	head = strings.Replace(head, oldSum, hex.EncodeToString(sum[:]), 1)
	if editHeader != nil {
		head = editHeader(head)
	}
	return []byte(head + "\n" + body)
}

func replaceOnce(t *testing.T, old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("%q not found in %.200s", old, s)
		}
		return strings.Replace(s, old, new, 1)
	}
}

func TestCorruptSnapshots(t *testing.T) {
	good, err := encode(fullTable(), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	nl := bytes.IndexByte(good, '\n')
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	garbage := make([]byte, 3000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}

	type tc struct {
		data   []byte            // file content, unless setup is set
		setup  func(path string) // makes the snapshot path something else
		kind   LoadErrorKind
		reason string // part of CorruptError.Reason
	}
	cases := map[string]tc{
		"empty file":                {data: []byte{}, kind: KindTruncated, reason: "truncated"},
		"truncated in magic":        {data: good[:7], kind: KindTruncated, reason: "truncated"},
		"truncated in header":       {data: good[:nl-5], kind: KindTruncated, reason: "truncated"},
		"truncated before newline":  {data: good[:nl], kind: KindTruncated, reason: "truncated"},
		"header only":               {data: good[:nl+1], kind: KindTruncated, reason: "truncated"},
		"truncated in payload":      {data: good[:nl+1+(len(good)-nl)/2], kind: KindTruncated, reason: "truncated"},
		"last byte missing":         {data: good[:len(good)-1], kind: KindTruncated, reason: "truncated"},
		"flipped byte in payload":   {data: flip(nl + 100), kind: KindChecksum, reason: "checksum mismatch"},
		"flipped last payload byte": {data: flip(len(good) - 1), kind: KindChecksum, reason: "checksum mismatch"},
		"flipped byte in checksum":  {data: flip(nl - 5), kind: KindChecksum, reason: "checksum mismatch"},
		"flipped byte in version":   {data: flip(len(magic)), kind: KindVersion, reason: "unknown format version 0"},
		"flipped byte in savedAt":   {data: flip(bytes.Index(good, []byte(`"savedAt":"2026`)) + 13), kind: KindMalformed, reason: "does not match payload"},
		"flipped byte in a key":     {data: flip(bytes.Index(good, []byte(`"routes"`)) + 1), kind: KindMalformed, reason: "malformed header"},
		"flipped byte in format":    {data: flip(12), kind: KindForeign, reason: "not a bulkhead snapshot"},
		"flipped newline":           {data: flip(nl), kind: KindMalformed, reason: "malformed header"},
		"foreign version": {
			data: bytes.Replace(good, []byte(`"version":1,`), []byte(`"version":7,`), 1),
			kind: KindVersion, reason: "unknown format version 7",
		},
		"foreign version with other header fields": {
			data: []byte(`{"format":"bulkhead-route-table","version":7,"compression":"zstd"}` + "\n\x28\xb5\x2f\xfd"),
			kind: KindVersion, reason: "unknown format version 7",
		},
		"foreign table schema": {
			data: reseal(t, good, replaceOnce(t, schema, "0123456789abcdef"), nil),
			kind: KindVersion, reason: "unknown table schema 0123456789abcdef",
		},
		"random garbage":       {data: garbage, kind: KindForeign, reason: "not a bulkhead snapshot"},
		"other JSON":           {data: []byte(`{"routes":[]}` + "\n"), kind: KindForeign, reason: "not a bulkhead snapshot"},
		"eskip file":           {data: []byte(`r: * -> <shunt>;`), kind: KindForeign, reason: "not a bulkhead snapshot"},
		"magic then garbage":   {data: append(bytes.Clone(magic), garbage...), kind: KindMalformed, reason: "malformed header"},
		"header key unknown":   {data: reseal(t, good, replaceOnce(t, `"routes":`, `"extra":1,"routes":`), nil), kind: KindMalformed, reason: "unknown field"},
		"header not canonical": {data: reseal(t, good, replaceOnce(t, `"routes":`, `"routes" :`), nil), kind: KindMalformed, reason: "not in the form"},
		"trailing data":        {data: append(bytes.Clone(good), "more\n"...), kind: KindMalformed, reason: "after the"},
		"route count differs":  {data: reseal(t, good, replaceOnce(t, `"routes":6,`, `"routes":5,`), nil), kind: KindMalformed, reason: "does not match payload"},
		"payload not JSON":     {data: reseal(t, good, nil, func(string) string { return "{\n" }), kind: KindMalformed, reason: "malformed payload"},
		"payload unknown field": {
			data: reseal(t, good, nil, replaceOnce(t, `"table":{`, `"table":{"Extra":1,`)),
			kind: KindMalformed, reason: "unknown field",
		},
		"payload wrong type": {
			data: reseal(t, good, nil, replaceOnce(t, `"ready":true`, `"ready":"yes"`)),
			kind: KindMalformed, reason: "malformed payload",
		},
		// The last route's eskip text is broken: nothing may be returned,
		// although the routes before it parse.
		"last route eskip broken": {
			data: reseal(t, good, nil, replaceOnce(t, `"eskip":"legacy: `, `"eskip":"legacy: ) `)),
			kind: KindMalformed, reason: "route 4: eskip",
		},
		"two routes in one eskip text": {
			data: reseal(t, good, nil, replaceOnce(t, `"eskip":"legacy: `, `"eskip":"x: * -> <shunt>; legacy: `)),
			kind: KindMalformed, reason: "2 routes instead of one",
		},
		"directory instead of file": {
			setup: func(p string) { mustDo(t, os.Mkdir(p, 0o700)) },
			kind:  KindUnreadable, reason: "unreadable: not a regular file but a directory",
		},
		// Root reads any file whatever its mode, so chmod 000 proves
		// nothing here; these are unreadable for root too.
		"symlink loop": {
			setup: func(p string) { mustDo(t, os.Symlink(p, p)) },
			kind:  KindUnreadable, reason: "too many levels of symbolic links",
		},
		"symlink to a directory": {
			setup: func(p string) { mustDo(t, os.Symlink(filepath.Dir(p), p)) },
			kind:  KindUnreadable, reason: "not a regular file",
		},
		"FIFO": { // would block a plain read
			setup: func(p string) { mustDo(t, syscall.Mkfifo(p, 0o600)) },
			kind:  KindUnreadable, reason: "not a regular file",
		},
		"path below a file": {
			setup: func(p string) {},
			kind:  KindUnreadable, reason: "not a directory",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, Options{})
			path := h.Path()
			if name == "path below a file" {
				// The state directory was replaced by a file after Open.
				mustDo(t, os.RemoveAll(h.dir))
				mustDo(t, os.WriteFile(h.dir, []byte("x"), 0o600))
			}
			if c.setup != nil {
				c.setup(path)
			} else {
				h.writeRaw(t, c.data)
			}
			got, meta, err := h.Load()
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Load: %v, want a *CorruptError", err)
			}
			t.Log(err)
			if ce.Kind != c.kind || !strings.Contains(ce.Reason, c.reason) || ce.Path != path {
				t.Errorf("got kind %q reason %q path %q, want kind %q reason containing %q path %q", ce.Kind, ce.Reason, ce.Path, c.kind, c.reason, path)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file: %v", err)
			}
			if !reflect.ValueOf(got).IsZero() || meta != (Meta{}) {
				t.Errorf("Load returned data with the error: %+v %+v", got, meta)
			}
			for _, k := range loadErrorKinds {
				want := 0.0
				if k == c.kind {
					want = 1
				}
				if v := h.loadErrors(k); v != want {
					t.Errorf("%s{reason=%q} = %v, want %v", MetricLoadErrors, k, v, want)
				}
			}
		})
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Every truncation is reported as such; every flipped header or payload
// byte is caught.
func TestEveryDamageIsCaught(t *testing.T) {
	good, err := encode(fullTable(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, cerr := decode(good); cerr != nil {
		t.Fatal(cerr)
	}
	for n := range len(good) {
		tb, _, cerr := decode(good[:n])
		if cerr == nil || cerr.Kind != KindTruncated || !reflect.ValueOf(tb).IsZero() {
			t.Fatalf("truncated to %d bytes: %v", n, cerr)
		}
	}
	kinds := map[LoadErrorKind]int{}
	for i := range len(good) {
		for _, mask := range []byte{0x01, 0x02, 0x20, 0x80, 0xff} {
			b := bytes.Clone(good)
			b[i] ^= mask
			tb, _, cerr := decode(b)
			if cerr == nil || !reflect.ValueOf(tb).IsZero() {
				t.Fatalf("byte %d (%q) ^ %#x not caught: %v", i, good[i], mask, cerr)
			}
			kinds[cerr.Kind]++
		}
	}
	t.Logf("%d bytes, flips reported as %v", len(good), kinds)
}

// The schema fingerprint changes with any field name, JSON tag or type,
// also in nested and embedded structs, and with nothing else.
func TestSchemaFingerprint(t *testing.T) {
	type inner struct{ A string }
	type innerInt struct{ A int }
	type base struct {
		Name  string `json:"name"`
		Items []inner
	}
	variants := map[string]reflect.Type{
		"base": reflect.TypeFor[base](),
		"renamed field": reflect.TypeFor[struct {
			Nom   string `json:"name"`
			Items []inner
		}](),
		"other tag": reflect.TypeFor[struct {
			Name  string `json:"name,omitempty"`
			Items []inner
		}](),
		"nested type": reflect.TypeFor[struct {
			Name  string `json:"name"`
			Items []innerInt
		}](),
		"added field": reflect.TypeFor[struct {
			Name  string `json:"name"`
			Items []inner
			More  bool
		}](),
		"embedded": reflect.TypeFor[struct {
			base
			More bool
		}](),
	}
	seen := map[string]string{}
	for name, ty := range variants {
		fp := fingerprint(ty)
		if other, ok := seen[fp]; ok {
			t.Errorf("%s and %s share fingerprint %s", name, other, fp)
		}
		seen[fp] = name
	}
	same := reflect.TypeFor[struct {
		Name  string `json:"name"`
		Items []inner
		x     int // unexported: not in the file
		Y     int `json:"-"`
	}]()
	a := reflect.TypeFor[struct {
		Name  string `json:"name"`
		Items []inner
	}]()
	if fingerprint(same) != fingerprint(a) {
		t.Error("unexported and json:\"-\" fields change the fingerprint")
	}
	if len(schema) != 16 {
		t.Errorf("schema %q", schema)
	}
}
