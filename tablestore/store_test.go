package tablestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zalando/skipper/eskip"

	"github.com/bulkhead-router/bulkhead/routing"
)

func TestFixtureIsFullyPopulated(t *testing.T) {
	checkPopulated(t, fullTable())
}

func TestRoundTrip(t *testing.T) {
	h := newHarness(t, Options{Now: func() time.Time { return fixedNow }})
	if _, _, err := h.Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Load of an empty directory: %v, want ErrNoSnapshot", err)
	}

	want := fullTable()
	if err := h.Save(want); err != nil {
		t.Fatal(err)
	}
	got, meta, err := h.Load()
	if err != nil {
		t.Fatal(err)
	}
	requireSameTable(t, want, got)
	// A route with only float64 arguments loads equal without normalising.
	if w, g := want.Routes[3].Eskip, got.Routes[3].Eskip; !eskip.Eq(w, g) {
		t.Errorf("default route: eskip.Eq fails:\n got %s\nwant %s", eskip.String(g), eskip.String(w))
	}

	fi, err := os.Stat(h.Path())
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := Meta{SavedAt: fixedNow.UTC(), Version: FormatVersion, Routes: len(want.Routes), Bytes: int(fi.Size())}
	if meta != wantMeta {
		t.Errorf("meta %+v, want %+v", meta, wantMeta)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("snapshot mode %v, want 0600", m)
	}
	if v := h.writes("ok"); v != 1 {
		t.Errorf("%s{result=ok} = %v, want 1", MetricWrites, v)
	}
	if v := testutil.ToFloat64(h.metrics.lastWrite); v != float64(fixedNow.UnixNano())/1e9 {
		t.Errorf("%s = %v, want %v", MetricLastWrite, v, float64(fixedNow.Unix()))
	}
	if v := testutil.ToFloat64(h.metrics.bytes); v != float64(fi.Size()) {
		t.Errorf("%s = %v, want %d", MetricBytes, v, fi.Size())
	}

	// Loading the loaded table's save gives it again (float64 args now).
	if err := h.Save(got); err != nil {
		t.Fatal(err)
	}
	again, _, err := h.Load()
	if err != nil {
		t.Fatal(err)
	}
	requireSameTable(t, got, again)
}

func TestSaveIsDeterministic(t *testing.T) {
	now := fixedNow
	h := newHarness(t, Options{Now: func() time.Time { return now }})
	read := func() []byte {
		t.Helper()
		if err := h.Save(fullTable()); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(h.Path())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first, second := read(), read()
	if !bytes.Equal(first, second) {
		t.Fatalf("second save of the same table differs:\n%s\n%s", first, second)
	}
	// A later save differs in the time only: the payload after "savedAt"
	// is byte-identical.
	now = now.Add(time.Hour)
	third := read()
	cut := func(b []byte) []byte {
		nl := bytes.IndexByte(b, '\n')
		return b[nl+1+bytes.IndexByte(b[nl+1:], ','):]
	}
	if !bytes.Equal(cut(first), cut(third)) {
		t.Fatalf("payload depends on more than the time:\n%s\n%s", cut(first), cut(third))
	}
}

func TestFormatIsInspectable(t *testing.T) {
	data, err := encode(fullTable(), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) != 3 || lines[2] != "" {
		t.Fatalf("want a header line and a payload line, got %d lines", len(lines))
	}
	var hd map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &hd); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"format", "version", "schema", "savedAt", "routes", "payloadBytes", "payloadSHA256"} {
		if _, ok := hd[k]; !ok {
			t.Errorf("header lacks %q: %s", k, lines[0])
		}
	}
	if !strings.Contains(lines[1], `-> <shunt>`) || !strings.Contains(lines[1], `"eskip":"ing__shop__api__foo_example_com__api__exact__1a2b3c4d: Path(`) {
		t.Errorf("payload does not show eskip text with IDs readably: %.300s", lines[1])
	}

	// Each key of the stored table appears once: if routing.Table got a
	// JSON tag for Routes, the embedded field would no longer be shadowed
	// and the routes would be stored twice.
	var p struct {
		Table map[string]json.RawMessage `json:"table"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &p); err != nil {
		t.Fatal(err)
	}
	for k := range p.Table {
		for k2 := range p.Table {
			if k != k2 && strings.EqualFold(k, k2) {
				t.Errorf("payload table has both %q and %q", k, k2)
			}
		}
	}
	if !bytes.Contains(p.Table["Routes"], []byte(`"eskip":`)) {
		t.Errorf("payload table Routes lack eskip text")
	}
}

func TestSaveRefusesRoutesThatDoNotRoundTrip(t *testing.T) {
	h := newHarness(t, Options{})
	if err := h.Save(smallTable(1)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(h.Path())
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]*eskip.Route{
		"nil":           nil,
		"slice arg":     {Id: "a", Filters: []*eskip.Filter{{Name: "f", Args: []any{[]string{"x"}}}}, BackendType: eskip.ShuntBackend},
		"bool arg":      {Id: "a", Predicates: []*eskip.Predicate{{Name: "P", Args: []any{true}}}, BackendType: eskip.ShuntBackend},
		"invalid id":    {Id: "a b", BackendType: eskip.ShuntBackend},
		"two paths":     {Id: "a", Path: "/x", Predicates: []*eskip.Predicate{{Name: "Path", Args: []any{"/y"}}}, BackendType: eskip.ShuntBackend},
		"mixed schemes": {Id: "a", BackendType: eskip.LBBackend, LBEndpoints: []*eskip.LBEndpoint{{Address: "http://a"}, {Address: "https://b"}}},
		// These print and parse, but not back to the same route.
		"Any is not printed": {Id: "a", Predicates: []*eskip.Predicate{{Name: "Any"}}, BackendType: eskip.ShuntBackend},
		"zone after a query": {Id: "a", BackendType: eskip.LBBackend, LBEndpoints: []*eskip.LBEndpoint{{Address: "http://a?x=1", Zone: "z"}}},
	}
	for name, r := range bad {
		tb := fullTable()
		tb.Routes[2].Eskip = r
		if err := h.Save(tb); err == nil {
			t.Errorf("%s: Save succeeded", name)
		}
	}
	if v := h.writes("error"); v != float64(len(bad)) {
		t.Errorf("%s{result=error} = %v, want %d", MetricWrites, v, len(bad))
	}
	after, err := os.ReadFile(h.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("failed saves changed the snapshot")
	}
	if tmp := h.tempFiles(t); len(tmp) != 0 {
		t.Errorf("left behind: %v", tmp)
	}
}

func TestEmptyTables(t *testing.T) {
	h := newHarness(t, Options{})
	for _, tb := range []routing.Table{
		{},
		{Routes: []*routing.Route{}, Problems: []routing.Problem{}, Served: nil},
	} {
		if err := h.Save(tb); err != nil {
			t.Fatal(err)
		}
		got, meta, err := h.Load()
		if err != nil {
			t.Fatal(err)
		}
		requireSameTable(t, tb, got)
		if meta.Routes != 0 {
			t.Errorf("meta.Routes = %d", meta.Routes)
		}
	}
}

func TestOpen(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{
		"path is a file":          file,
		"path below a file":       filepath.Join(file, "state"),
		"path far below a file":   filepath.Join(file, "a", "b"),
		"empty path":              "",
		"path is a symlink loop":  mkLoop(t, base),
		"path through a dangling": filepath.Join(mkDangling(t, base), "x"),
	} {
		_, err := Open(dir, Options{})
		if err == nil {
			t.Errorf("%s: Open(%q) succeeded", name, dir)
			continue
		}
		if !strings.Contains(err.Error(), dir) {
			t.Errorf("%s: error does not name the path: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}

	// A directory in which even root cannot create files: the write probe
	// catches it.
	if fi, err := os.Stat("/proc/self"); err == nil && fi.IsDir() {
		_, err := Open("/proc/self", Options{})
		if err == nil || !strings.Contains(err.Error(), "/proc/self is not writable") {
			t.Errorf("Open(/proc/self): %v, want not writable", err)
		}
		t.Logf("unwritable directory: %v", err)
	}

	// Missing directories are created, 0o700.
	dir := filepath.Join(base, "new", "state")
	if _, err := Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v %v", fi.Mode(), err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Errorf("Open left files behind: %v", es)
	}

	// Metrics go to the given registry; registering twice is an error.
	reg := prometheus.NewRegistry()
	if _, err := Open(dir, Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, MetricWrites, MetricLastWrite, MetricBytes, MetricLoadErrors); err != nil || n != 2+1+1+len(loadErrorKinds) {
		t.Errorf("registered series: %d, %v", n, err)
	}
	if _, err := Open(dir, Options{Registerer: reg}); err == nil {
		t.Error("second Open with the same registry succeeded")
	}
}

func mkLoop(t *testing.T, base string) string {
	p := filepath.Join(base, "loop")
	if err := os.Symlink(p, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkDangling(t *testing.T, base string) string {
	// A symlink to a file below a regular file: MkdirAll cannot follow it.
	p := filepath.Join(base, "dangling")
	if err := os.Symlink(filepath.Join(base, "file", "target"), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// A crash after writing the temporary file and before the rename leaves
// that file behind: Load ignores it, Open removes it.
func TestCrashBeforeRenameKeepsPreviousSnapshot(t *testing.T) {
	h := newHarness(t, Options{})
	old := fullTable()
	if err := h.Save(old); err != nil {
		t.Fatal(err)
	}
	newer, err := encode(bigTable(50), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i, data := range [][]byte{newer[:len(newer)/2], newer, nil} {
		tmp := filepath.Join(h.dir, tempPrefix+"12345"+string(rune('a'+i)))
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := h.Load()
	if err != nil {
		t.Fatal(err)
	}
	requireSameTable(t, old, got)

	s2, err := Open(h.dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tmp := h.tempFiles(t); len(tmp) != 0 {
		t.Errorf("Open left %v", tmp)
	}
	got, _, err = s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	requireSameTable(t, old, got)
}

// A write failing at the last step before the rename leaves the previous
// snapshot, and no temporary file.
func TestFailedWriteKeepsPreviousSnapshot(t *testing.T) {
	h := newHarness(t, Options{})
	old := fullTable()
	if err := h.Save(old); err != nil {
		t.Fatal(err)
	}
	var sawTemp bool
	h.beforeRename = func(tmp string) error {
		fi, err := os.Stat(tmp)
		sawTemp = err == nil && fi.Mode().Perm() == 0o600 && fi.Size() > 0
		return errors.New("simulated crash")
	}
	if err := h.Save(bigTable(20)); err == nil {
		t.Fatal("Save succeeded")
	}
	if !sawTemp {
		t.Error("the temporary file was not written complete with mode 0600 before the rename")
	}
	got, _, err := h.Load()
	if err != nil {
		t.Fatal(err)
	}
	requireSameTable(t, old, got)
	if tmp := h.tempFiles(t); len(tmp) != 0 {
		t.Errorf("left behind: %v", tmp)
	}
	if h.writes("error") != 1 || h.writes("ok") != 1 {
		t.Errorf("writes ok=%v error=%v, want 1 and 1", h.writes("ok"), h.writes("error"))
	}
}

// A rename that really fails (a directory holds the final name) leaves no
// file of ours behind.
func TestRenameFailure(t *testing.T) {
	h := newHarness(t, Options{})
	if err := os.MkdirAll(filepath.Join(h.Path(), "occupied"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := h.Save(fullTable())
	if err == nil {
		t.Fatal("Save succeeded")
	}
	t.Log(err)
	if tmp := h.tempFiles(t); len(tmp) != 0 {
		t.Errorf("left behind: %v", tmp)
	}
	if fi, err := os.Stat(h.Path()); err != nil || !fi.IsDir() {
		t.Errorf("the directory in the way was touched: %v", err)
	}
}

// Readers never see a partly written snapshot while writes go on.
func TestConcurrentLoadSeesWholeSnapshots(t *testing.T) {
	h := newHarness(t, Options{})
	tables := []routing.Table{smallTable(1), bigTable(300)}
	if err := h.Save(tables[0]); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		for i := range 40 {
			if err := h.Save(tables[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	loads := 0
	for running := true; running || loads < 10; loads++ {
		select {
		case <-done:
			running = false
		default:
		}
		got, meta, err := h.Load()
		if err != nil {
			t.Fatalf("load %d: %v", loads, err)
		}
		if meta.Routes != 1 && meta.Routes != 300 || len(got.Routes) != meta.Routes {
			t.Fatalf("load %d: %d routes, meta %+v", loads, len(got.Routes), meta)
		}
	}
	wg.Wait()
	t.Logf("%d loads", loads)
}

// Checking a route before saving must not change it: routing tables are
// shared, read-only.
func TestSaveDoesNotModifyTheTable(t *testing.T) {
	tb := fullTable()
	before := eskip.String(tb.EskipRoutes()...)
	h := newHarness(t, Options{})
	if err := h.Save(tb); err != nil {
		t.Fatal(err)
	}
	if _, ok := tb.Routes[2].Eskip.Filters[1].Args[0].(int); !ok {
		t.Error("status(503) argument is no longer an int")
	}
	if after := eskip.String(tb.EskipRoutes()...); after != before {
		t.Errorf("routes changed:\n%s\n%s", before, after)
	}
	requireSameTable(t, fullTable(), tb)
}

// A write prints only routes the previous write has not seen (published
// routes are immutable and the translator keeps the objects of unchanged
// ones); the texts carried over are those of the current routes only.
func TestEncodeReusesTextsOfKnownRoutes(t *testing.T) {
	table := bigTable(3)
	_, texts, err := encodeWith(table, fixedNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(texts) != 3 {
		t.Fatalf("%d texts for 3 routes", len(texts))
	}
	// Mark the text of route 0 to see it reused, and drop route 2's.
	known := map[*eskip.Route]string{table.Routes[0].Eskip: "marked: " + texts[table.Routes[0].Eskip],
		table.Routes[1].Eskip: texts[table.Routes[1].Eskip], &eskip.Route{Id: "gone"}: "x"}
	data, next, err := encodeWith(table, fixedNow, known)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("marked: ")) {
		t.Error("a known route was printed again")
	}
	if got := next[table.Routes[2].Eskip]; got != texts[table.Routes[2].Eskip] {
		t.Errorf("the unknown route printed as %q, want %q", got, texts[table.Routes[2].Eskip])
	}
	if len(next) != 3 {
		t.Errorf("%d texts carried over, want the 3 current routes'", len(next))
	}
}

// The Store's cache reuses the JSON of known routes, which holds their
// texts, and keeps no texts beside it.
func TestEncodeCacheReusesRouteJSONWithoutTexts(t *testing.T) {
	table := bigTable(3)
	_, cache, err := encodeCached(table, fixedNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cache.texts != nil || len(cache.routes) != 3 || len(cache.backends) != len(table.Backends) {
		t.Fatalf("cache of %d texts, %d routes, %d backends; want no texts, 3 routes, %d backends",
			len(cache.texts), len(cache.routes), len(cache.backends), len(table.Backends))
	}
	marked := bytes.Replace(cache.routes[table.Routes[0].Eskip], []byte(`"eskip":"`), []byte(`"eskip":"marked: `), 1)
	if bytes.Equal(marked, cache.routes[table.Routes[0].Eskip]) {
		t.Fatalf("no eskip text in the route's JSON: %s", marked)
	}
	cache.routes[table.Routes[0].Eskip] = marked
	parts, next, err := encodeCached(table, fixedNow, cache)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(bytes.Join(parts, nil), []byte("marked: ")) || next.texts != nil {
		t.Errorf("a known route's JSON was not reused (or texts were kept: %d)", len(next.texts))
	}
}

// The payload put together from routes and backends encoded one by one
// (and kept from the last write) is byte for byte the encoding of the
// whole payload at once.
func TestEncodeSplicedEqualsWholeEncoding(t *testing.T) {
	whole := func(tb routing.Table) []byte {
		p := payload{SavedAt: fixedNow.UTC(), Table: storedTable{Table: tb}}
		p.Table.Table.Routes = nil
		if tb.Routes != nil {
			p.Table.Routes = make([]storedRoute, len(tb.Routes))
		}
		for i, r := range tb.Routes {
			text, err := eskipText(r.Eskip)
			if err != nil {
				t.Fatal(err)
			}
			p.Table.Routes[i] = storedRoute{Eskip: text, Route: *r}
			p.Table.Routes[i].Route.Eskip = nil
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(p); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	body := func(data []byte) []byte { return data[bytes.IndexByte(data, '\n')+1:] }
	var cache *encodeCache
	first := fullTable()
	second := fullTable()
	second.Routes = append(slices.Clone(first.Routes[1:]), bigTable(2).Routes...) // some routes kept, one gone, two new
	second.Backends = nil
	for i, tb := range []routing.Table{first, second, {}, first} {
		parts, next, err := encodeCached(tb, fixedNow, cache)
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Join(parts, nil)
		if want := whole(tb); !bytes.Equal(body(data), want) {
			t.Fatalf("table %d: spliced payload differs:\n%s\nwant\n%s", i, body(data), want)
		}
		cache = next
	}
}

// Each write reuses the JSON of the routes and backends the last one
// wrote, read back from its file, and the file is still byte for byte the
// encoding of the whole table; a file that is not what was written
// (damaged, replaced, gone) is not reused.
func TestSaveReusesTheWrittenFile(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	first, second := bigTable(50), bigTable(60)
	second.Routes = append(slices.Clone(first.Routes[5:]), second.Routes[50:]...) // some kept, some gone, some new
	second.Backends = append(slices.Clone(first.Backends[3:]), routing.Backend{Key: routing.BackendKey{Namespace: "zz", Service: "new", Port: 80}})
	tamper := map[string]func(){
		"":         func() {},
		"damaged":  func() { damage(t, s.Path()) },
		"replaced": func() { writeFile(t, s.Path(), mustEncode(t, bigTable(50))) },
		"removed":  func() { _ = os.Remove(s.Path()) },
	}
	for _, how := range []string{"", "damaged", "", "replaced", "", "removed", ""} {
		for i, tb := range []routing.Table{first, second, {}, first} {
			if err := s.Save(tb); err != nil {
				t.Fatal(err)
			}
			if i == 0 && how == "" && s.written == nil {
				t.Fatal("nothing kept of the write")
			}
			got, err := os.ReadFile(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			if want := mustEncode(t, tb); !bytes.Equal(got, want) {
				t.Fatalf("after %q, table %d: the file is not the table's encoding:\n%s\nwant\n%s", how, i, got, want)
			}
			tamper[how]()
		}
	}
}

func damage(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte(`"eskip":"`))
	if i < 0 {
		return
	}
	data[i+len(`"eskip":"`)] ^= 1
	writeFile(t, path, data)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustEncode(t *testing.T, tb routing.Table) []byte {
	t.Helper()
	data, err := encode(tb, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
