package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

// decode returns the JSON log records written to buf.
func decode(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var records []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
		records = append(records, m)
	}
	return records
}

func TestLibraryLogsAreRoutedAndDemoted(t *testing.T) {
	var buf bytes.Buffer
	if _, err := New(&buf, slog.LevelInfo, "json"); err != nil {
		t.Fatal(err)
	}
	logrus.Info("skipper route update") // demoted: hidden at info
	logrus.WithField("id", "r1").Warn("skipper warning")
	klog.Info("reflector chatter") // demoted: hidden at info
	klog.ErrorS(nil, "client-go failure", "resource", "ingresses")
	klog.Flush()

	records := decode(t, &buf)
	if len(records) != 2 {
		t.Fatalf("want the warning and the error only, got %d records: %s", len(records), buf.String())
	}
	if records[0]["msg"] != "skipper warning" || records[0]["level"] != "WARN" || records[0]["component"] != "skipper" || records[0]["id"] != "r1" {
		t.Errorf("logrus warning not routed with its fields: %v", records[0])
	}
	if records[1]["msg"] != "client-go failure" || records[1]["level"] != "ERROR" || records[1]["component"] != "client-go" || records[1]["resource"] != "ingresses" {
		t.Errorf("klog error not routed with its fields: %v", records[1])
	}
}

func TestDebugLevelShowsLibraryInfo(t *testing.T) {
	var buf bytes.Buffer
	if _, err := New(&buf, slog.LevelDebug, "text"); err != nil {
		t.Fatal(err)
	}
	logrus.Info("skipper route update")
	if !strings.Contains(buf.String(), "skipper route update") || !strings.Contains(buf.String(), "level=DEBUG") {
		t.Fatalf("skipper info not shown as debug: %q", buf.String())
	}
}

func TestBadSettings(t *testing.T) {
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel accepted an unknown level")
	}
	if _, err := New(&bytes.Buffer{}, slog.LevelInfo, "xml"); err == nil {
		t.Error("New accepted an unknown format")
	}
}

func TestPerRequestErrorsAreSampled(t *testing.T) {
	var buf bytes.Buffer
	if _, err := New(&buf, slog.LevelInfo, "json"); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		logrus.Errorf("error while proxying after 1ms, route r with backend lb, status code 502: dial tcp: connection refused")
	}
	records := decode(t, &buf)
	if len(records) != 1 || records[0]["level"] != "WARN" {
		t.Fatalf("want one sampled warning for 50 failed requests, got %d: %s", len(records), buf.String())
	}
	logrus.Error("something else broke") // not per request: always logged
	if records = decode(t, &buf); len(records) != 2 || records[1]["level"] != "ERROR" {
		t.Fatalf("a non-request error was not logged as an error: %s", buf.String())
	}
}

// formatCount counts how often logrus formats it into a message.
type formatCount struct{ n *int }

func (f formatCount) String() string { *f.n++; return "x" }

// skipper's logrus lines below our level must be refused by logrus itself,
// before it formats them under its global lock: skipper logs at debug on
// every 404 and client error.
func TestLogrusLevelFollowsOurs(t *testing.T) {
	defer func() { _, _ = New(io.Discard, slog.LevelInfo, "text") }()
	for _, c := range []struct {
		level             slog.Level
		debug, info, warn bool // formatted by logrus
	}{
		{slog.LevelDebug, true, true, true},
		{slog.LevelInfo, false, false, true},
		{slog.LevelWarn, false, false, true},
		{slog.LevelError, false, false, false},
	} {
		var buf bytes.Buffer
		if _, err := New(&buf, c.level, "text"); err != nil {
			t.Fatal(err)
		}
		for _, l := range []struct {
			log  func(string, ...any)
			want bool
		}{{logrus.Debugf, c.debug}, {logrus.Infof, c.info}, {logrus.Warnf, c.warn}} {
			n := 0
			l.log("skipper line %v", formatCount{&n})
			if formatted := n > 0; formatted != l.want {
				t.Errorf("level %s: a logrus line was formatted %d times, want formatted=%v", c.level, n, l.want)
			}
		}
		// What logrus lets through still reaches our log when our level wants it.
		if got := strings.Contains(buf.String(), "skipper line x"); got != c.warn {
			t.Errorf("level %s: logrus lines in our log: %v, want %v:\n%s", c.level, got, c.warn, buf.String())
		}
	}
}
