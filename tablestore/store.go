package tablestore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/routing"
)

// FileName is the snapshot's name in the state directory.
const FileName = "routes.snapshot"

// tempPrefix starts the names of files being written; Open removes any
// left over by a crash.
const tempPrefix = FileName + ".tmp-"

// ErrNoSnapshot is returned by Load when the state directory holds no
// snapshot.
var ErrNoSnapshot = errors.New("tablestore: no snapshot")

// LoadErrorKind classifies an unusable snapshot; the values are the reason
// label of MetricLoadErrors.
type LoadErrorKind string

const (
	// KindUnreadable: the file exists but cannot be read (a directory in
	// its place, a symlink loop, an I/O error, ...).
	KindUnreadable LoadErrorKind = "unreadable"
	// KindTruncated: the file ends before the header line or before the
	// payload length it declares.
	KindTruncated LoadErrorKind = "truncated"
	// KindForeign: the file is not a bulkhead snapshot.
	KindForeign LoadErrorKind = "not_a_snapshot"
	// KindVersion: a bulkhead snapshot of a format version or table schema
	// this build does not read.
	KindVersion LoadErrorKind = "unknown_version"
	// KindChecksum: the payload does not match the header's SHA-256.
	KindChecksum LoadErrorKind = "checksum_mismatch"
	// KindMalformed: anything else (a damaged header, trailing bytes, a
	// payload that does not decode).
	KindMalformed LoadErrorKind = "malformed"
)

var loadErrorKinds = []LoadErrorKind{KindUnreadable, KindTruncated, KindForeign, KindVersion, KindChecksum, KindMalformed}

// CorruptError is returned by Load for a snapshot that exists but cannot be
// used. Nothing of it was loaded.
type CorruptError struct {
	Path string
	Kind LoadErrorKind
	// Reason says what is wrong, e.g. "checksum mismatch: ...",
	// "unknown format version 7 (this build reads 1)".
	Reason string
	Err    error // the underlying error, if any
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("tablestore: ignoring snapshot %s: %s", e.Path, e.Reason)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Meta describes a loaded snapshot.
type Meta struct {
	SavedAt time.Time // when it was written (UTC)
	Version int       // format version
	Routes  int       // number of routes
	Bytes   int       // file size
}

// Options configure a Store. The zero value works.
type Options struct {
	// Registerer receives the metrics; nil means none are registered.
	Registerer prometheus.Registerer
	// Log receives write failures and recoveries; nil discards them.
	Log *slog.Logger
	// Now is the clock for SavedAt and the log rate limit; nil means
	// time.Now.
	Now func() time.Time
}

// Store keeps the last route table in one file of a state directory.
type Store struct {
	dir, path string
	log       *slog.Logger
	now       func() time.Time
	metrics   *metrics

	mu      sync.Mutex // serialises writes and guards the fields below
	failing bool       // the last write failed
	failLog time.Time  // when a failure was last logged
	quiet   int        // failures since then that were not logged
	// written is where the last write put the JSON of each route and
	// backend (by identity) in the file: the next write reads it back and
	// encodes only what it has not seen.
	written *fileCache

	pendingMu sync.Mutex
	pending   *routing.Table
	kick      chan struct{} // capacity 1: a table is (probably) pending

	// Test hooks.
	beforeRename func(tmp string) error
	after        func(time.Duration) (<-chan time.Time, func())
}

// Open prepares dir (created 0o700 if missing) for snapshots: it must be a
// writable directory. Temporary files left by an interrupted write are
// removed.
func Open(dir string, o Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("tablestore: no state directory given")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("tablestore: state directory %s is not a directory but %s", dir, fileType(fi))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		// Stat names some causes better ("too many levels of symbolic
		// links" rather than "file exists").
		if _, serr := os.Stat(dir); serr != nil && !errors.Is(serr, fs.ErrNotExist) && !errors.Is(serr, syscall.ENOTDIR) {
			err = serr
		}
		return nil, fmt.Errorf("tablestore: state directory %s cannot be created: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("tablestore: state directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("tablestore: state directory %s is not a directory but %s", dir, fileType(fi))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tablestore: state directory %s cannot be read: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("tablestore: state directory %s: removing a leftover temporary file: %w", dir, err)
			}
		}
	}
	if err := probeWritable(dir); err != nil {
		return nil, fmt.Errorf("tablestore: state directory %s is not writable: %w", dir, err)
	}

	s := &Store{
		dir:   dir,
		path:  filepath.Join(dir, FileName),
		log:   o.Log,
		now:   o.Now,
		kick:  make(chan struct{}, 1),
		after: realAfter,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.metrics, err = newMetrics(o.Registerer); err != nil {
		return nil, fmt.Errorf("tablestore: registering metrics: %w", err)
	}
	return s, nil
}

// probeWritable creates, syncs and removes a file in dir: the only check
// that also holds for root, read-only file systems and full disks.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, tempPrefix+"probe-*")
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte("probe\n"))
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(f.Name())
	return errors.Join(werr, serr, cerr, rerr)
}

// Path is the snapshot file's path.
func (s *Store) Path() string { return s.path }

// Save writes t as the snapshot, atomically and durably: a reader (also
// after a crash or power loss) sees either the previous snapshot or this
// one, complete. A failure is logged (rate-limited, see doc.go), counted
// and returned; the previous snapshot is then untouched.
func (s *Store) Save(t routing.Table) error {
	_, err := s.save(t)
	return err
}

// save reports, on failure, whether retrying the same table may help
// (false when the table itself cannot be encoded).
func (s *Store) save(t routing.Table) (retry bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	known, release := s.written.load(s.path)
	// After the last use of known's JSON: encodeCached's parts and the
	// cache it returns point into it, and newFileCache reads them.
	defer release()
	if known == nil {
		known = &encodeCache{spansOnly: true}
	}
	parts, written, err := encodeCached(t, now, known)
	size := 0
	if err == nil {
		retry = true
		size, err = s.writeFile(parts)
	}
	if err == nil {
		s.written = newFileCache(t, parts, written, s.written) // nil: the next write encodes everything
	} else if retry {
		s.written = nil // the file may have been replaced
	}
	if err != nil {
		s.metrics.writes.WithLabelValues("error").Inc()
		s.logFailure(now, err)
		return retry, err
	}
	s.metrics.writes.WithLabelValues("ok").Inc()
	s.metrics.lastWrite.Set(float64(now.UnixNano()) / 1e9)
	s.metrics.bytes.Set(float64(size))
	if s.failing {
		s.log.Info("route table snapshot written again", "path", s.path, "routes", len(t.Routes))
		s.failing = false
	}
	return false, nil
}

// logFailure logs the first failure of a run, then at most one line a
// minute while writes keep failing.
func (s *Store) logFailure(now time.Time, err error) {
	switch {
	case !s.failing:
		s.failing, s.failLog, s.quiet = true, now, 0
		s.log.Error("route table snapshot not written; the previous one, if any, stays", "path", s.path, "err", err)
	case now.Sub(s.failLog) >= time.Minute:
		s.log.Error("route table snapshot still not written", "path", s.path, "err", err, "unlogged_failures", s.quiet)
		s.failLog, s.quiet = now, 0
	default:
		s.quiet++
	}
}

// writeFile replaces the snapshot with the concatenation of parts, and
// returns its size. Each step is there for a
// crash at any point (see doc.go).
func (s *Store) writeFile(parts [][]byte) (size int, err error) {
	f, err := os.CreateTemp(s.dir, tempPrefix+"*") // mode 0o600
	if err != nil {
		return 0, fmt.Errorf("tablestore: creating a temporary file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // may be closed already
			_ = os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 256<<10) // the parts are small: one write a buffer
	for _, part := range parts {
		n, _ := w.Write(part) // a failure is sticky: Flush reports it
		size += n
	}
	if err := w.Flush(); err != nil {
		return 0, fmt.Errorf("tablestore: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("tablestore: syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("tablestore: closing %s: %w", tmp, err)
	}
	if s.beforeRename != nil {
		if err := s.beforeRename(tmp); err != nil {
			return 0, err
		}
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return 0, fmt.Errorf("tablestore: replacing the snapshot: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		// The new snapshot is in place, but may not survive a power loss.
		return 0, fmt.Errorf("tablestore: syncing directory %s: %w", s.dir, err)
	}
	return size, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	return errors.Join(serr, d.Close())
}

// Load reads the snapshot. It returns ErrNoSnapshot if there is none, a
// *CorruptError if it cannot be used (also counted in MetricLoadErrors),
// and otherwise the complete table; never part of one.
func (s *Store) Load() (routing.Table, Meta, error) {
	t, h, n, cerr := s.load()
	if cerr == nil {
		s.metrics.bytes.Set(float64(n))
		return t, Meta{SavedAt: h.SavedAt, Version: h.Version, Routes: h.Routes, Bytes: n}, nil
	}
	if errors.Is(cerr, ErrNoSnapshot) {
		return routing.Table{}, Meta{}, ErrNoSnapshot
	}
	var ce *CorruptError
	if !errors.As(cerr, &ce) {
		ce = &CorruptError{Kind: KindUnreadable, Reason: "unreadable: " + cerr.Error(), Err: cerr}
	}
	ce.Path = s.path
	s.metrics.loadErrors.WithLabelValues(string(ce.Kind)).Inc()
	return routing.Table{}, Meta{}, ce
}

func (s *Store) load() (routing.Table, header, int, error) {
	data, err := readSnapshot(s.path)
	if err != nil {
		return routing.Table{}, header{}, 0, err
	}
	t, h, cerr := decode(data)
	if cerr != nil {
		return routing.Table{}, header{}, 0, cerr
	}
	return t, h, len(data), nil
}

// readSnapshot reads a regular file of at most maxFileBytes. Anything
// else is unreadable: a FIFO would block, a directory cannot be read.
func readSnapshot(path string) ([]byte, error) {
	f, fi, err := openRegular(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, ErrNoSnapshot
	case err != nil:
		return nil, unreadable(err)
	}
	defer f.Close()
	if fi.Size() > maxFileBytes {
		return nil, corrupt(KindForeign, nil, "not a bulkhead snapshot: %d bytes, more than the %d-byte limit", fi.Size(), maxFileBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, unreadable(err)
	}
	if len(data) > maxFileBytes {
		return nil, corrupt(KindForeign, nil, "not a bulkhead snapshot: more than the %d-byte limit", maxFileBytes)
	}
	return data, nil
}

// openRegular opens path for reading if it is a regular file, and
// returns what the open file is. The type is checked on the open file, not
// the path before it: a FIFO put in its place meanwhile would make a plain
// open wait for a writer forever (O_NONBLOCK makes that open return at
// once, and it changes nothing for a regular file).
func openRegular(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("not a regular file but %s", fileType(fi))
	}
	return f, fi, nil
}

func unreadable(err error) *CorruptError {
	return corrupt(KindUnreadable, err, "unreadable: %v", err)
}

func fileType(fi os.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	default:
		return "a " + m.Type().String() + " file"
	}
}
