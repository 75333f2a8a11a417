package upstream

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// rawServer speaks minimal HTTP/1.1 keep-alive. The first connection it
// accepts is closed with a RST (SO_LINGER 0, as a pod killed with idle
// keep-alive connections) after its first answer, when kill is closed.
type rawServer struct {
	l        net.Listener
	kill     chan struct{}
	killed   chan struct{}
	accepted atomic.Int32
}

func newRawServer(t *testing.T) *rawServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{l: l, kill: make(chan struct{}), killed: make(chan struct{})}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			first := s.accepted.Add(1) == 1
			go s.serve(c, first)
		}
	}()
	t.Cleanup(func() { l.Close() })
	return s
}

func (s *rawServer) serve(c net.Conn, first bool) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw")
		if first {
			<-s.kill
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
			close(s.killed)
			return
		}
	}
}

func TestKeepAliveClosedBetweenRequests(t *testing.T) {
	for _, podGone := range []bool{false, true} {
		name := map[bool]string{false: "conn-closed", true: "pod-gone"}[podGone]
		t.Run(name, func(t *testing.T) {
			log := &hitLog{}
			u, _ := newUpstream(t, Config{})
			a, b := newRawServer(t), newBackend(t, 200, log)
			install(u, []string{a.l.Addr().String(), b.addr()})
			rt := wrap(u, newTransport(t))
			body := []byte(`{"op":"create"}`)

			resp, err := do(t, rt, "POST", a.l.Addr().String(), body)
			if err != nil || resp.StatusCode != 200 {
				t.Fatal(resp, err)
			}
			if podGone {
				a.l.Close()
			}
			close(a.kill)
			<-a.killed

			// POST (never retried after sending) on the dead keep-alive conn.
			// Like skipper's outgoing request: the body is the client's
			// stream, without GetBody.
			resp, err = do(t, rt, "POST", a.l.Addr().String(), nil, func(r *http.Request) {
				r.Body, r.GetBody, r.ContentLength = io.NopCloser(bytes.NewReader(body)), nil, int64(len(body))
			})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("second request not retried transparently: %v %v", resp, err)
			}
			got, _ := io.ReadAll(resp.Body)
			if podGone && (log.count(b.addr()) != 1 || string(got) != "from "+b.addr()) {
				t.Fatalf("pod gone: want B, got %q", got)
			}
			if !podGone && (string(got) != "raw" || a.accepted.Load() != 2) {
				t.Fatalf("conn closed: want A on a new connection, got %q (A accepted %d)", got, a.accepted.Load())
			}
			t.Logf("A accepted %d connections, retries by bulkhead %v", a.accepted.Load(),
				testutil.ToFloat64(u.metrics.retries.WithLabelValues(testBackendKey)))
		})
	}
}

func TestTLSHandshakeFailureRetried(t *testing.T) {
	log := &hitLog{}
	u, _ := newUpstream(t, Config{})
	plain := newBackend(t, 200, log) // speaks HTTP, not TLS: handshake fails
	good := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tls")
	}))
	defer good.Close()
	install(u, []string{plain.addr(), good.Listener.Addr().String()})
	tr := newTransport(t)
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	req, _ := http.NewRequest("POST", "https://"+plain.addr()+"/", bytes.NewReader([]byte("x")))
	resp, err := wrap(u, tr).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got, _ := io.ReadAll(resp.Body); string(got) != "tls" {
		t.Fatalf("got %q", got)
	}
}
