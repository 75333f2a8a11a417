package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// identity is who the pod claims to be in every answer.
type identity struct {
	Pod       string
	Service   string
	Namespace string
}

// mode is the pod-wide behaviour set through the control endpoint.
type mode string

const (
	modeOK    mode = "ok"
	mode503   mode = "503"
	modeHang  mode = "hang"
	modeClose mode = "close"
)

func parseMode(s string) (mode, bool) {
	switch m := mode(s); m {
	case modeOK, mode503, modeHang, modeClose:
		return m, true
	}
	return "", false
}

// echo is the JSON document every answer starts with. The helper package
// decodes it with a struct of its own (testpods.Echo); keep the field names in
// step.
type echo struct {
	Pod        string      `json:"pod"`
	Service    string      `json:"service"`
	Namespace  string      `json:"namespace"`
	Method     string      `json:"method"`
	Host       string      `json:"host"`
	Path       string      `json:"path"`
	RawQuery   string      `json:"rawQuery"`
	Proto      string      `json:"proto"`
	Headers    http.Header `json:"headers"`
	RemoteAddr string      `json:"remoteAddr"`
	BodyBytes  int64       `json:"bodyBytes"`
	Error      string      `json:"error,omitempty"`
}

// stats is what GET /stats on the control endpoint answers.
type stats struct {
	Mode     mode  `json:"mode"`
	Requests int64 `json:"requests"`
	InFlight int64 `json:"inFlight"`
}

// Limits on the shaping parameters keep a typo from making the pod allocate
// or stream forever.
const (
	maxSleep       = 10 * time.Minute
	maxFillerBytes = 1 << 32
	maxStreamParts = 100000
	streamInterval = 10 * time.Millisecond
)

// podHandler answers the data port and owns the pod-wide state.
type podHandler struct {
	id  identity
	log *slog.Logger

	mode     atomic.Value // of mode
	requests atomic.Int64
	inFlight atomic.Int64

	// abandoned is closed when the shutdown grace period has expired, so
	// requests that would otherwise hang forever give up.
	abandoned     chan struct{}
	abandonedOnce sync.Once
}

func newPodHandler(id identity, log *slog.Logger) *podHandler {
	h := &podHandler{id: id, log: log, abandoned: make(chan struct{})}
	h.mode.Store(modeOK)
	return h
}

func (h *podHandler) currentMode() mode { return h.mode.Load().(mode) }

func (h *podHandler) abandonRequests() {
	h.abandonedOnce.Do(func() { close(h.abandoned) })
}

func (h *podHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	h.inFlight.Add(1)
	defer h.inFlight.Add(-1)

	status := http.StatusOK
	switch h.currentMode() {
	case modeHang:
		// Read the request but never answer; the client decides when to
		// give up. The body is drained first because the server only
		// notices a client going away (and cancels r.Context()) once the
		// body has been consumed.
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-h.abandoned:
		}
		abortWithoutAnswer(w)
	case modeClose:
		abortWithoutAnswer(w)
	case mode503:
		status = http.StatusServiceUnavailable
	}

	doc := echo{
		Pod:        h.id.Pod,
		Service:    h.id.Service,
		Namespace:  h.id.Namespace,
		Method:     r.Method,
		Host:       r.Host,
		Path:       r.URL.Path,
		RawQuery:   r.URL.RawQuery,
		Proto:      r.Proto,
		Headers:    r.Header,
		RemoteAddr: r.RemoteAddr,
	}
	// Drain the body so uploads complete and the client sees how much
	// arrived.
	n, _ := io.Copy(io.Discard, r.Body)
	doc.BodyBytes = n

	shape, err := parseShape(r.URL.Query())
	if err != nil {
		doc.Error = err.Error()
		h.writeHead(w, http.StatusBadRequest, -1)
		writeJSON(w, doc)
		return
	}
	if shape.status != 0 && h.currentMode() != mode503 {
		status = shape.status
	}

	if shape.sleep > 0 {
		timer := time.NewTimer(shape.sleep)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return // the client is gone; nobody reads an answer
		}
	}

	body, _ := json.Marshal(doc)
	body = append(body, '\n')
	contentLength := int64(-1)
	if shape.stream == 0 {
		contentLength = int64(len(body)) + shape.bytes
	}
	h.writeHead(w, status, contentLength)
	if _, err := w.Write(body); err != nil {
		return
	}
	if err := writeFiller(w, shape.bytes); err != nil {
		return
	}
	if shape.stream > 0 {
		streamParts(w, r, shape.stream)
	}
}

func (h *podHandler) writeHead(w http.ResponseWriter, status int, contentLength int64) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("X-Testpod-Pod", h.id.Pod)
	hdr.Set("X-Testpod-Service", h.id.Service)
	hdr.Set("X-Testpod-Namespace", h.id.Namespace)
	if contentLength >= 0 {
		hdr.Set("Content-Length", strconv.FormatInt(contentLength, 10))
	}
	w.WriteHeader(status)
}

// abortWithoutAnswer drops the connection (HTTP/1) or resets the stream
// (HTTP/2) without writing a single byte of response. It does not return.
func abortWithoutAnswer(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
	// After a hijack the server ignores this panic; on HTTP/2, where
	// hijacking is impossible, it is the documented way to reset the
	// stream without a response.
	panic(http.ErrAbortHandler)
}

// shape is what the query parameters ask of one response.
type shape struct {
	sleep  time.Duration
	status int
	bytes  int64
	stream int
}

func parseShape(q url.Values) (shape, error) {
	var s shape
	if v := q.Get("sleep"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxSleep {
			return s, fmt.Errorf("sleep=%q: want a duration between 0 and %s", v, maxSleep)
		}
		s.sleep = d
	}
	if v := q.Get("status"); v != "" {
		code, err := strconv.Atoi(v)
		// 1xx would be sent as an interim response followed by a 200,
		// which is not what a test asking for a status means.
		if err != nil || code < 200 || code > 599 {
			return s, fmt.Errorf("status=%q: want 200..599", v)
		}
		s.status = code
	}
	if v := q.Get("bytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > maxFillerBytes {
			return s, fmt.Errorf("bytes=%q: want 0..%d", v, int64(maxFillerBytes))
		}
		s.bytes = n
	}
	if v := q.Get("stream"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxStreamParts {
			return s, fmt.Errorf("stream=%q: want 0..%d", v, maxStreamParts)
		}
		s.stream = n
	}
	return s, nil
}

func writeJSON(w io.Writer, v any) {
	body, _ := json.Marshal(v)
	w.Write(append(body, '\n'))
}

// fillerPattern repeats the alphabet so a test can spot corruption or
// truncation in a large body, not just a wrong length.
var fillerPattern = func() []byte {
	b := make([]byte, 32*1024)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

// writeFiller writes n bytes of the alphabet, starting with 'a'. Each block
// is a multiple of 26 long except the last, so the pattern continues across
// blocks.
func writeFiller(w io.Writer, n int64) error {
	block := fillerPattern[:len(fillerPattern)/26*26]
	for n > 0 {
		chunk := block
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		written, err := w.Write(chunk)
		if err != nil {
			return err
		}
		n -= int64(written)
	}
	return nil
}

// streamParts sends parts lines, each flushed on its own, streamInterval
// apart, so a proxy that buffers whole responses is caught.
func streamParts(w http.ResponseWriter, r *http.Request, parts int) {
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	ticker := time.NewTicker(streamInterval)
	defer ticker.Stop()
	for i := range parts {
		select {
		case <-ticker.C:
		case <-r.Context().Done():
			return
		}
		if _, err := fmt.Fprintf(w, "chunk %d\n", i); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// controlHandler serves the control endpoint.
func (h *podHandler) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mode", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, map[string]mode{"mode": h.currentMode()})
	})
	mux.HandleFunc("POST /mode", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		m, ok := parseMode(r.URL.Query().Get("value"))
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			writeJSON(w, map[string]string{"error": fmt.Sprintf(
				"value=%q: want one of ok, 503, hang, close", r.URL.Query().Get("value"))})
			return
		}
		previous := h.mode.Swap(m).(mode)
		if previous != m {
			h.log.Info("mode changed", "from", string(previous), "to", string(m))
		}
		writeJSON(w, map[string]mode{"mode": m})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, stats{Mode: h.currentMode(), Requests: h.requests.Load(), InFlight: h.inFlight.Load()})
	})
	return mux
}
