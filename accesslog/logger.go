package accesslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/routing"
)

// Metric names, registered on Options.Registerer.
const (
	MetricLines   = "bulkhead_access_log_lines_total"
	MetricDropped = "bulkhead_access_log_dropped_total"
)

// Reasons a line is dropped (the reason label of MetricDropped).
const (
	DropQueueFull  = "queue-full"  // the sink is slower than the requests: the queue was full
	DropWriteError = "write-error" // the sink refused the write
)

// DefaultQueue is the default number of lines waiting for the sink.
const DefaultQueue = 4096

// maxBatch bounds what the writer gathers into one write.
const maxBatch = 64 << 10

// FlushDelay is how long a line may wait for others before the writer
// writes them together: the longest a line takes to reach the sink (when
// the sink keeps up). Writing each line as it came cost one write(2) and
// one wake-up of the writer per request: 40% more CPU per request
// through the router (docs/BENCHMARKS.md); nginx's buffered access_log
// makes the same trade with a second.
const FlushDelay = 100 * time.Millisecond

// Options configure a Logger.
type Options struct {
	// Format of the lines; JSON by default.
	Format Format
	// Fields to write; zero: DefaultFields.
	Fields Fields
	// Sample is the share of successful requests logged, from 0 to 1
	// (1: every request). A failure is always logged: a status of 500 or
	// more, an attempt that failed, a retry, a breaker skip or a stop
	// reason.
	Sample float64
	// File, when set, is the path lines are appended to (created when
	// missing, opened again by Reopen); else they go to Out.
	File string
	// Out receives the lines when File is empty; nil: os.Stdout.
	Out io.Writer
	// Queue is how many lines may wait for the sink; zero: DefaultQueue.
	// Beyond it lines are dropped and counted.
	Queue int
	// Registerer receives the metrics; nil: not registered.
	Registerer prometheus.Registerer
	// Log receives the sink's errors: the first of a streak and the
	// recovery, never one per line.
	Log *slog.Logger
}

// Logger writes one line per request (see the package documentation).
type Logger struct {
	format Format
	fields Fields
	// sample as a threshold on a uniform 64-bit random number: a success
	// is logged when the number is below it; all: every success.
	sampleBelow uint64
	sampleAll   bool

	routes atomic.Pointer[[]*routing.Route] // the live table's routes, sorted by id
	bufs   sync.Pool                        // *[]byte line buffers
	queue  chan *[]byte
	kickAt int           // queued lines that make the writer start before FlushDelay
	kick   chan struct{} // the queue is filling: write now
	reopen chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed sync.Once

	entries sync.Pool // *entry

	// The writer goroutine's own.
	file   string
	out    io.Writer
	f      *os.File // when writing to File
	failed bool     // the last write failed
	log    *slog.Logger

	lines       prometheus.Counter
	droppedFull prometheus.Counter
	droppedErr  prometheus.Counter
}

// New opens the sink and starts the writer. Close flushes and stops it.
func New(o Options) (*Logger, error) {
	if o.Sample < 0 || o.Sample > 1 || o.Sample != o.Sample {
		return nil, fmt.Errorf("access log sample %v: want a share from 0 to 1", o.Sample)
	}
	if o.Format != JSON && o.Format != Text {
		return nil, fmt.Errorf("access log format %d: unknown", o.Format)
	}
	if o.Fields == 0 {
		o.Fields = DefaultFields
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &Logger{
		format:    o.Format,
		fields:    o.Fields,
		sampleAll: o.Sample >= 1,
		queue:     make(chan *[]byte, o.Queue),
		kickAt:    max(o.Queue/4, 1),
		kick:      make(chan struct{}, 1),
		reopen:    make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		file:      o.File,
		out:       o.Out,
		log:       o.Log,
	}
	// 2^64 * sample, computed so that 0.5 is exactly 1<<63.
	l.sampleBelow = uint64(o.Sample * (1 << 63) * 2)
	l.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	l.entries.New = func() any { return new(entry) }
	if l.file != "" {
		f, err := openFile(l.file)
		if err != nil {
			return nil, err
		}
		l.f, l.out = f, f
	} else if l.out == nil {
		l.out = os.Stdout
	}
	lines := prometheus.NewCounter(prometheus.CounterOpts{Name: MetricLines,
		Help: "Access log lines written to the sink."})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDropped,
		Help: "Access log lines dropped, by reason: queue-full (the sink was slower than the requests; requests are never held back for it) or write-error (the sink refused the write)."},
		[]string{"reason"})
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{lines, dropped} {
			if err := o.Registerer.Register(c); err != nil {
				if l.f != nil {
					l.f.Close()
				}
				return nil, fmt.Errorf("access log metrics: %w", err)
			}
		}
	}
	l.lines, l.droppedFull, l.droppedErr = lines, dropped.WithLabelValues(DropQueueFull), dropped.WithLabelValues(DropWriteError)
	go l.run()
	return l, nil
}

// openFile opens path for appending. Without a reader, a FIFO is an
// error at once (ENXIO) instead of a start that hangs in open.
func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) {
			return nil, fmt.Errorf("access log file %s: a FIFO without a reader: %w", path, err)
		}
		return nil, fmt.Errorf("access log file: %w", err)
	}
	return f, nil
}

// SetTable makes t the table whose routes lines name their Ingress,
// HTTPRoute or GRPCRoute from (call it with every applied table).
func (l *Logger) SetTable(t routing.Table) {
	rs := t.Routes
	l.routes.Store(&rs)
}

// Reopen makes the writer open the file again before its next write:
// after logrotate moved it away (SIGHUP). Without a file it does nothing.
func (l *Logger) Reopen() {
	select {
	case l.reopen <- struct{}{}:
	default: // one is pending already
	}
}

// Close writes the lines still queued and stops the writer; it gives up
// when ctx ends first (a sink that blocks). Lines of requests still
// running are dropped.
func (l *Logger) Close(ctx context.Context) error {
	l.closed.Do(func() { close(l.stop) })
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("access log: %d lines not written: %w", len(l.queue), ctx.Err())
	}
}

// enqueue hands a line to the writer, or drops it when the queue is
// full: the request never waits for the sink.
func (l *Logger) enqueue(buf *[]byte) {
	select {
	case l.queue <- buf:
	default:
		l.droppedFull.Inc()
		l.putBuf(buf)
		return
	}
	// The writer waits FlushDelay for more lines after the first; a
	// queue a quarter full does not wait, so that the rest of it absorbs
	// the lines that come while the writer writes.
	if len(l.queue) >= l.kickAt {
		select {
		case l.kick <- struct{}{}:
		default: // one is pending already
		}
	}
}

func (l *Logger) putBuf(buf *[]byte) {
	if cap(*buf) > 64<<10 {
		return // a giant line (a huge hostile path): not kept around
	}
	*buf = (*buf)[:0]
	l.bufs.Put(buf)
}

// run is the writer: from the first line of a batch it waits FlushDelay
// (or a kick from a filling queue, or Close), then gathers what is queued
// into as few writes as maxBatch allows.
func (l *Logger) run() {
	defer close(l.done)
	batch := make([]byte, 0, maxBatch)
	delay := time.NewTimer(FlushDelay)
	delay.Stop()
	for {
		select {
		case buf := <-l.queue:
			batch = append(batch[:0], *buf...)
			l.putBuf(buf)
			delay.Reset(FlushDelay)
			select {
			case <-delay.C:
			case <-l.kick:
				delay.Stop()
			case <-l.stop:
				delay.Stop()
				// Closing: the stop case below writes the rest.
			}
			batch = l.gather(batch, 1)
			// Kicks sent while the writer was writing are spent: the
			// queue was just drained.
			select {
			case <-l.kick:
			default:
			}
		case <-l.reopen:
			l.reopenFile()
		case <-l.stop:
			for {
				select {
				case buf := <-l.queue:
					batch = l.gather(append(batch[:0], *buf...), 1)
					l.putBuf(buf)
					continue
				default:
				}
				break
			}
			if l.f != nil {
				l.f.Close()
			}
			return
		}
	}
}

// gather adds the lines queued behind the first (already in batch, n of
// them), writing whenever the batch reaches maxBatch, until the queue is
// empty.
func (l *Logger) gather(batch []byte, n int) []byte {
	for {
		select {
		case buf := <-l.queue:
			if len(batch)+len(*buf) > maxBatch && n > 0 {
				l.write(batch, n)
				batch, n = batch[:0], 0
			}
			batch = append(batch, *buf...)
			l.putBuf(buf)
			n++
			continue
		default:
		}
		break
	}
	if n > 0 {
		l.write(batch, n)
	}
	if cap(batch) > 4*maxBatch {
		batch = make([]byte, 0, maxBatch)
	}
	return batch
}

func (l *Logger) write(batch []byte, n int) {
	_, err := l.out.Write(batch)
	if err != nil {
		l.droppedErr.Add(float64(n))
		if !l.failed {
			l.failed = true
			l.log.Warn("access log: writing failed; lines are dropped and counted until it works again", "metric", MetricDropped, "err", err)
		}
		return
	}
	l.lines.Add(float64(n))
	if l.failed {
		l.failed = false
		l.log.Info("access log: writing works again")
	}
}

func (l *Logger) reopenFile() {
	if l.file == "" {
		return
	}
	f, err := openFile(l.file)
	if err != nil {
		// Keep writing to the old one (moved away, still ours) rather
		// than losing lines.
		l.log.Warn("access log: reopening the file failed; still writing to the one open", "err", err)
		return
	}
	l.f.Close()
	l.f, l.out = f, f
	l.log.Info("access log: file reopened", "file", l.file)
}
