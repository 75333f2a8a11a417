package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var testIdentity = identity{Pod: "web-1", Service: "web", Namespace: "shop"}

// directClient never consults proxy settings from the environment.
var directClient = &http.Client{Transport: &http.Transport{}}

// startPod serves a podHandler on loopback with its control endpoint.
func startPod(t *testing.T) (data *httptest.Server, controlURL string) {
	t.Helper()
	h := newPodHandler(testIdentity, slog.New(slog.DiscardHandler))
	data = httptest.NewUnstartedServer(h)
	data.Config.Protocols = new(http.Protocols)
	data.Config.Protocols.SetHTTP1(true)
	data.Config.Protocols.SetUnencryptedHTTP2(true)
	data.Start()
	control := httptest.NewServer(h.controlHandler())
	t.Cleanup(func() {
		h.abandonRequests() // release hanging handlers so Close does not wait
		data.Close()
		control.Close()
	})
	return data, control.URL
}

func decodeEcho(t *testing.T, body io.Reader) echo {
	t.Helper()
	var doc echo
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("decode echo: %v", err)
	}
	return doc
}

func getStats(t *testing.T, controlURL string) stats {
	t.Helper()
	resp, err := directClient.Get(controlURL + "/stats")
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	defer resp.Body.Close()
	var s stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("decode stats: %v", err)
	}
	return s
}

// awaitInFlight polls the control endpoint until the pod reports want
// requests in flight; the pod's own counter is the event we wait for.
func awaitInFlight(t *testing.T, controlURL string, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	ticker := time.NewTicker(5 * time.Millisecond)
	defer ticker.Stop()
	for {
		s := getStats(t, controlURL)
		if s.InFlight == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("in-flight requests: got %d, want %d", s.InFlight, want)
		}
		<-ticker.C
	}
}

func setMode(t *testing.T, controlURL string, m string) *http.Response {
	t.Helper()
	resp, err := directClient.Post(controlURL+"/mode?value="+m, "", nil)
	if err != nil {
		t.Fatalf("POST /mode: %v", err)
	}
	resp.Body.Close()
	return resp
}

func TestEchoDescribesRequestAndPod(t *testing.T) {
	data, control := startPod(t)
	req, _ := http.NewRequest("POST", data.URL+"/a/b?x=1&y=two", strings.NewReader("hello"))
	req.Host = "shop.example"
	req.Header.Set("X-Test", "v1")
	resp, err := data.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Testpod-Pod"); got != "web-1" {
		t.Errorf("X-Testpod-Pod = %q", got)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	doc := decodeEcho(t, resp.Body)
	want := echo{
		Pod: "web-1", Service: "web", Namespace: "shop",
		Method: "POST", Host: "shop.example", Path: "/a/b", RawQuery: "x=1&y=two",
		Proto: "HTTP/1.1", BodyBytes: 5,
	}
	got := doc
	got.Headers, got.RemoteAddr = nil, ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("echo = %+v\nwant %+v", got, want)
	}
	if doc.Headers.Get("X-Test") != "v1" {
		t.Errorf("headers = %v", doc.Headers)
	}
	if host, _, err := net.SplitHostPort(doc.RemoteAddr); err != nil || host != "127.0.0.1" {
		t.Errorf("remoteAddr = %q", doc.RemoteAddr)
	}
	if s := getStats(t, control); s.Requests != 1 || s.InFlight != 0 || s.Mode != modeOK {
		t.Errorf("stats = %+v", s)
	}
}

func TestH2CWithPriorKnowledge(t *testing.T) {
	data, _ := startPod(t)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(data.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if doc := decodeEcho(t, resp.Body); doc.Proto != "HTTP/2.0" {
		t.Errorf("proto = %q", doc.Proto)
	}
}

func TestStatusParameter(t *testing.T) {
	data, _ := startPod(t)
	resp, err := data.Client().Get(data.URL + "/?status=418")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 418 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if doc := decodeEcho(t, resp.Body); doc.Pod != "web-1" {
		t.Errorf("body not the echo document: %+v", doc)
	}
}

func TestInvalidParametersAreRejected(t *testing.T) {
	data, _ := startPod(t)
	for _, q := range []string{"sleep=forever", "sleep=-1s", "status=99", "status=abc", "bytes=-1", "stream=x"} {
		resp, err := data.Client().Get(data.URL + "/?" + q)
		if err != nil {
			t.Fatal(err)
		}
		doc := decodeEcho(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || doc.Error == "" {
			t.Errorf("%s: status %d error %q", q, resp.StatusCode, doc.Error)
		}
	}
}

func TestSleepParameter(t *testing.T) {
	data, _ := startPod(t)
	start := time.Now()
	resp, err := data.Client().Get(data.URL + "/?sleep=150ms")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
		t.Errorf("answered after %v, want at least 150ms", elapsed)
	}
}

func TestSleepEndsWhenClientGivesUp(t *testing.T) {
	data, control := startPod(t)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", data.URL+"/?sleep=5m", nil)
	errs := make(chan error, 1)
	go func() {
		resp, err := data.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errs <- err
	}()
	awaitInFlight(t, control, 1)
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	awaitInFlight(t, control, 0)
}

func TestBytesParameter(t *testing.T) {
	data, _ := startPod(t)
	const n = 100003
	resp, err := data.Client().Get(data.URL + "/?bytes=" + strconv.Itoa(n))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Errorf("Content-Length %d, body %d", resp.ContentLength, len(body))
	}
	doc, filler, ok := strings.Cut(string(body), "\n")
	if !ok || !json.Valid([]byte(doc)) {
		t.Fatalf("body does not start with a JSON line: %.100q", body)
	}
	if len(filler) != n {
		t.Fatalf("filler is %d bytes, want %d", len(filler), n)
	}
	for i := range len(filler) {
		if filler[i] != 'a'+byte(i%26) {
			t.Fatalf("filler byte %d = %q, breaks the alphabet pattern", i, filler[i])
		}
	}
}

func TestStreamParameter(t *testing.T) {
	data, _ := startPod(t)
	start := time.Now()
	resp, err := data.Client().Get(data.URL + "/?stream=5")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != -1 {
		t.Errorf("Content-Length %d, want unknown (streamed)", resp.ContentLength)
	}
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() || !json.Valid(lines.Bytes()) {
		t.Fatalf("first line is not the JSON document: %q", lines.Text())
	}
	// The document is flushed before the first part is due.
	if elapsed := time.Since(start); elapsed >= 5*streamInterval {
		t.Errorf("first line took %v, the response seems buffered", elapsed)
	}
	for i := range 5 {
		if !lines.Scan() || lines.Text() != "chunk "+strconv.Itoa(i) {
			t.Fatalf("line %d = %q", i, lines.Text())
		}
	}
	if lines.Scan() {
		t.Errorf("unexpected extra line %q", lines.Text())
	}
	if elapsed := time.Since(start); elapsed < 5*streamInterval {
		t.Errorf("5 parts took %v, want at least %v", elapsed, 5*streamInterval)
	}
}

func TestModes(t *testing.T) {
	data, control := startPod(t)

	if resp := setMode(t, control, "bogus"); resp.StatusCode != 400 {
		t.Errorf("bogus mode: status %d", resp.StatusCode)
	}

	setMode(t, control, "503")
	resp, err := data.Client().Get(data.URL + "/?status=200")
	if err != nil {
		t.Fatal(err)
	}
	doc := decodeEcho(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || doc.Pod != "web-1" {
		t.Errorf("503 mode: status %d, pod %q", resp.StatusCode, doc.Pod)
	}

	setMode(t, control, "hang")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "GET", data.URL+"/", nil)
	_, err = data.Client().Do(req)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang mode: err = %v, want deadline exceeded", err)
	}
	awaitInFlight(t, control, 0) // the pod noticed the client gave up

	setMode(t, control, "close")
	_, err = data.Client().Get(data.URL + "/")
	if err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("close mode: err = %v, want EOF or reset", err)
	}

	setMode(t, control, "ok")
	resp, err = directClient.Get(control + "/mode")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got["mode"] != "ok" {
		t.Errorf("GET /mode = %v", got)
	}
	resp, err = data.Client().Get(data.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("ok mode: status %d", resp.StatusCode)
	}
	if s := getStats(t, control); s.Requests != 4 {
		t.Errorf("requests = %d, want 4", s.Requests)
	}
}

// runServe starts serve on loopback listeners and returns the base URLs, a
// function that plays the termination signal, and the exit code channel.
func runServe(t *testing.T, grace time.Duration) (dataURL, controlURL string, terminate func(), exit <-chan int) {
	t.Helper()
	return runServeConfig(t, config{identity: testIdentity, shutdownTimeout: grace})
}

func runServeConfig(t *testing.T, cfg config) (dataURL, controlURL string, terminate func(), exit <-chan int) {
	t.Helper()
	dataListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	controlListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	codes := make(chan int, 1)
	stopped := make(chan struct{})
	go func() {
		codes <- serve(ctx, dataListener, controlListener, cfg, slog.New(slog.DiscardHandler))
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return "http://" + dataListener.Addr().String(), "http://" + controlListener.Addr().String(), cancel, codes
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	dataURL, control, terminate, exit := runServe(t, 10*time.Second)
	client := directClient
	answers := make(chan *http.Response, 1)
	go func() {
		resp, err := client.Get(dataURL + "/?sleep=300ms")
		if err != nil {
			t.Error(err)
		}
		answers <- resp
	}()
	awaitInFlight(t, control, 1)
	terminate()
	resp := <-answers
	if resp == nil {
		t.FailNow()
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("in-flight request: status %d", resp.StatusCode)
	}
	if code := <-exit; code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if _, err := client.Get(dataURL + "/"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after shutdown: err = %v, want connection refused", err)
	}
}

// TestShutdownDelayKeepsServing: with -shutdown-delay the pod answers new
// requests, on new and on kept-alive connections, after the signal, until
// the delay is over; then it refuses connections.
func TestShutdownDelayKeepsServing(t *testing.T) {
	dataURL, _, terminate, exit := runServeConfig(t, config{identity: testIdentity, shutdownTimeout: 10 * time.Second, shutdownDelay: time.Second})
	client := &http.Client{Transport: &http.Transport{}}
	get := func() error {
		resp, err := client.Get(dataURL + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	terminate()
	// The delay is a second; the first of these answers are well inside it.
	for i := range 5 {
		if err := get(); err != nil {
			t.Fatalf("request %d after the signal: %v", i, err)
		}
	}
	if code := <-exit; code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if _, err := directClient.Get(dataURL + "/"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after shutdown: err = %v, want connection refused", err)
	}
}

func TestShutdownGivesUpOnHangingRequestsAfterGrace(t *testing.T) {
	dataURL, control, terminate, exit := runServe(t, 100*time.Millisecond)
	setMode(t, control, "hang")
	client := directClient
	errs := make(chan error, 1)
	go func() {
		resp, err := client.Get(dataURL + "/")
		if err == nil {
			resp.Body.Close()
		}
		errs <- err
	}()
	awaitInFlight(t, control, 1)
	terminate()
	if code := <-exit; code != 1 {
		t.Errorf("exit code %d, want 1 after the grace period expired", code)
	}
	if err := <-errs; err == nil {
		t.Errorf("hanging request got an answer")
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-listen", "10.0.0.2:8080", "-control", "10.0.0.2:15000",
		"-pod", "p", "-service", "s", "-namespace", "n", "-shutdown-timeout", "5s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != "10.0.0.2:8080" || cfg.control != "10.0.0.2:15000" || cfg.shutdownTimeout != 5*time.Second ||
		cfg.identity != (identity{Pod: "p", Service: "s", Namespace: "n"}) {
		t.Errorf("cfg = %+v", cfg)
	}
	if _, err := parseFlags(nil, io.Discard); err == nil {
		t.Error("missing -listen accepted")
	}
}
