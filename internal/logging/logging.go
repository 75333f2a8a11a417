package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

// Fixed attribute keys, so that every log line about one object can be found
// with one query.
const (
	KeyNamespace = "namespace"
	KeyName      = "name"
	KeyKind      = "kind"
	KeyRoute     = "route"
	KeyEndpoint  = "endpoint"
	KeyError     = "err"
	KeyComponent = "component"
)

// ParseLevel reads a -log-level value.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}

// New returns a logger writing to w in the given format ("text" or "json")
// and routes logrus (skipper) and klog (client-go) into it.
func New(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("unknown log format %q (want text or json)", format)
	}
	logger := slog.New(h)
	routeLogrus(logger.With(KeyComponent, "skipper"), level)
	routeKlog(logger.With(KeyComponent, "client-go"))
	return logger, nil
}

// routeLogrus sends the global logrus logger, which skipper uses, to l.
func routeLogrus(l *slog.Logger, level slog.Level) {
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrusLevel(level))
	logrus.StandardLogger().ReplaceHooks(logrus.LevelHooks{})
	logrus.AddHook(logrusHook{l: l, sampler: &sampler{interval: 10 * time.Second}})
}

// logrusLevel is the most verbose logrus level whose lines can still be
// logged at level. logrus must filter them itself: a line it lets through
// is formatted under its global lock (on skipper's 404 and client-error
// paths, once per request) before the hook could drop it. logrus's info
// becomes debug here (see Fire), so above debug only warnings and errors
// are wanted, and at error only errors.
func logrusLevel(level slog.Level) logrus.Level {
	switch {
	case level <= slog.LevelDebug:
		return logrus.DebugLevel
	case level <= slog.LevelWarn:
		return logrus.WarnLevel
	default:
		return logrus.ErrorLevel
	}
}

func isPerRequest(msg string) bool {
	for _, p := range perRequestPrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

type logrusHook struct {
	l       *slog.Logger
	sampler *sampler
}

// perRequestPrefixes are skipper's log lines about one failed request.
// During a backend outage they come once per request; bulkhead samples
// them (see sampler) rather than log on the hot path at default level.
var perRequestPrefixes = []string{
	"error while proxying",
	"Failed to retry backend request",
	"error during closing the response body",
	"Error connecting to backend",
	"Error writing request to backend",
	"Error reading response from backend",
	"Error writing body to client",
	"Error writing backend response to client",
	"error copying data",
	"client canceled",
}

// sampler lets one per-request line through every interval, at warn, with
// the number suppressed since; the others go to debug.
type sampler struct {
	interval time.Duration
	mu       sync.Mutex
	last     time.Time
	dropped  int
}

func (s *sampler) admit(now time.Time) (ok bool, suppressed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.last) < s.interval {
		s.dropped++
		return false, 0
	}
	s.last, suppressed, s.dropped = now, s.dropped, 0
	return true, suppressed
}

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	}
	if level > slog.LevelDebug && isPerRequest(e.Message) {
		ok, suppressed := h.sampler.admit(e.Time)
		if !ok {
			level = slog.LevelDebug
		} else {
			level = slog.LevelWarn
			if suppressed > 0 && e.Data != nil {
				e.Data["suppressed_since_last"] = suppressed
			}
		}
	}
	if !h.l.Enabled(context.Background(), level) {
		return nil
	}
	attrs := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		attrs = append(attrs, k, v)
	}
	h.l.Log(context.Background(), level, strings.TrimSpace(e.Message), attrs...)
	return nil
}

// routeKlog sends klog, which client-go uses, to l. klog's info lines (V(0))
// become debug: client-go logs reflector restarts there, which an outage
// makes frequent and which bulkhead reports itself with more context.
func routeKlog(l *slog.Logger) {
	klog.SetLogger(logr.New(klogSink{l: l}))
}

// klogSink is a logr.LogSink over slog that demotes klog's info level.
type klogSink struct {
	l     *slog.Logger
	name  string
	attrs []any
}

func (s klogSink) Init(logr.RuntimeInfo) {}

func (s klogSink) Enabled(v int) bool {
	return s.l.Enabled(context.Background(), slog.LevelDebug-slog.Level(v))
}

func (s klogSink) Info(v int, msg string, kv ...any) {
	s.l.Log(context.Background(), slog.LevelDebug-slog.Level(v), msg, append(s.attrs, kv...)...)
}

func (s klogSink) Error(err error, msg string, kv ...any) {
	s.l.Log(context.Background(), slog.LevelError, msg, append(append(s.attrs, KeyError, err), kv...)...)
}

func (s klogSink) WithValues(kv ...any) logr.LogSink {
	s.attrs = append(append([]any(nil), s.attrs...), kv...)
	return s
}

func (s klogSink) WithName(name string) logr.LogSink {
	if s.name != "" {
		name = s.name + "." + name
	}
	s.name = name
	s.l = s.l.With("logger", name)
	return s
}

// Skipper adapts l to skipper's logging.Logger interface, for the places
// (routing.Options.Log) that take one instead of using logrus. Info is
// demoted to debug for the same reason as above.
type Skipper struct {
	L *slog.Logger
	// Expected lists message fragments that skipper reports as errors but
	// that are normal for bulkhead (the route source declining to answer
	// before it has synced); they are logged at debug.
	Expected []string
}

func (s Skipper) Error(a ...any)            { s.error(fmt.Sprint(a...)) }
func (s Skipper) Errorf(f string, a ...any) { s.error(fmt.Sprintf(f, a...)) }

func (s Skipper) error(msg string) {
	for _, e := range s.Expected {
		if strings.Contains(msg, e) {
			s.L.Debug(msg)
			return
		}
	}
	s.L.Error(msg)
}
func (s Skipper) Warn(a ...any)             { s.L.Warn(fmt.Sprint(a...)) }
func (s Skipper) Warnf(f string, a ...any)  { s.L.Warn(fmt.Sprintf(f, a...)) }
func (s Skipper) Info(a ...any)             { s.debug(fmt.Sprint, a...) }
func (s Skipper) Infof(f string, a ...any)  { s.debugf(f, a...) }
func (s Skipper) Debug(a ...any)            { s.debug(fmt.Sprint, a...) }
func (s Skipper) Debugf(f string, a ...any) { s.debugf(f, a...) }

func (s Skipper) debug(format func(...any) string, a ...any) {
	if s.L.Enabled(context.Background(), slog.LevelDebug) {
		s.L.Debug(format(a...))
	}
}

func (s Skipper) debugf(f string, a ...any) {
	if s.L.Enabled(context.Background(), slog.LevelDebug) {
		s.L.Debug(fmt.Sprintf(f, a...))
	}
}
