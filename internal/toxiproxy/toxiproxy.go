package toxiproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/freeport"
	"github.com/bulkhead-router/bulkhead/internal/toolbuild"
)

// Server is a running toxiproxy.
type Server struct {
	api    string
	client *http.Client
	cmd    *exec.Cmd
	done   chan struct{}
}

// ForTest starts a toxiproxy server for one test and stops it at the end.
func ForTest(t testing.TB) *Server {
	t.Helper()
	tools, err := toolbuild.EnsureTools(context.Background(), io.Discard)
	if err != nil {
		t.Fatalf("building toxiproxy: %v", err)
	}
	port := freePort(t)
	cmd := exec.Command(tools.Toxiproxy, "-host", "127.0.0.1", "-port", strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	log, err := os.Create(t.TempDir() + "/toxiproxy.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting toxiproxy: %v", err)
	}
	s := &Server{api: "http://127.0.0.1:" + strconv.Itoa(port), client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}},
		cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); log.Close(); close(s.done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-s.done })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := s.call(http.MethodGet, "/version", nil); err == nil {
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("toxiproxy exited at start")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("toxiproxy did not answer in 20 s")
		}
		time.Sleep(20 * time.Millisecond) // waiting for another process to listen
	}
}

// Proxy is one proxied route, listening on Listen and forwarding to an
// upstream.
type Proxy struct {
	s      *Server
	Name   string
	Listen string // 127.0.0.1:PORT
}

// NewProxy forwards a new loopback port to upstream.
func (s *Server) NewProxy(t testing.TB, name, upstream string) *Proxy {
	t.Helper()
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	body := map[string]any{"name": name, "listen": listen, "upstream": upstream, "enabled": true}
	if err := s.call(http.MethodPost, "/proxies", body); err != nil {
		t.Fatalf("create proxy: %v", err)
	}
	return &Proxy{s: s, Name: name, Listen: listen}
}

// Cut disables the proxy: it closes every connection (clients see resets
// or EOF) and refuses new ones, like a network that is down hard.
func (p *Proxy) Cut() error {
	return p.s.call(http.MethodPost, "/proxies/"+p.Name, map[string]any{"enabled": false})
}

// Restore re-enables a cut proxy.
func (p *Proxy) Restore() error {
	return p.s.call(http.MethodPost, "/proxies/"+p.Name, map[string]any{"enabled": true})
}

// BlackHole makes the proxy swallow all data in both directions, holding
// connections open without answering, like a silent partition. Existing
// connections are affected too.
func (p *Proxy) BlackHole() error {
	for _, stream := range []string{"upstream", "downstream"} {
		toxic := map[string]any{"name": "blackhole-" + stream, "type": "timeout", "stream": stream, "toxicity": 1.0,
			"attributes": map[string]any{"timeout": 0}}
		if err := p.s.call(http.MethodPost, "/proxies/"+p.Name+"/toxics", toxic); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes the black hole.
func (p *Proxy) Heal() error {
	for _, stream := range []string{"upstream", "downstream"} {
		if err := p.s.call(http.MethodDelete, "/proxies/"+p.Name+"/toxics/blackhole-"+stream, nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) call(method, path string, body any) error {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.api+path, r)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("toxiproxy %s %s: %s: %s", method, path, resp.Status, msg)
	}
	return nil
}

// freePort returns a port below the ephemeral range: a cut proxy closes
// its listener and binds it again on restore, and meanwhile an outgoing
// connection could take an ephemeral port.
func freePort(t testing.TB) int {
	t.Helper()
	ports, err := freeport.Get(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}
