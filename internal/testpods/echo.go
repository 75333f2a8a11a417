package testpods

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Echo is the JSON document a testpod puts at the start of every answer on
// its data port. Field names match the testpod program (package main there,
// so the struct is repeated rather than shared; a test keeps them in step).
type Echo struct {
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
	// Error is set when a query parameter was invalid (status 400).
	Error string `json:"error,omitempty"`
}

// DecodeEcho reads the JSON document at the start of a testpod answer. Any
// filler (?bytes) or streamed parts (?stream) after it are left unread.
func DecodeEcho(body io.Reader) (Echo, error) {
	var e Echo
	if err := json.NewDecoder(body).Decode(&e); err != nil {
		return Echo{}, fmt.Errorf("testpods: decode echo document: %w", err)
	}
	return e, nil
}

// Mode is the pod-wide behaviour switched through Pod.SetMode.
type Mode string

const (
	// ModeOK answers every request normally.
	ModeOK Mode = "ok"
	// Mode503 answers every request with 503 (still the JSON document).
	Mode503 Mode = "503"
	// ModeHang reads requests and never answers until the client gives up.
	ModeHang Mode = "hang"
	// ModeClose closes connections without answering.
	ModeClose Mode = "close"
)

// Stats is what a pod reports about the requests on its data port.
type Stats struct {
	Mode Mode `json:"mode"`
	// Requests counts requests received since the pod started, including
	// ones that were hung or closed.
	Requests int64 `json:"requests"`
	// InFlight counts requests received and not finished yet.
	InFlight int64 `json:"inFlight"`
}

// DirectClient returns an HTTP client that never consults proxy settings
// from the environment, so requests to pod addresses go straight to the
// pods (a proxy would send them elsewhere). Keep-alives are on; each call
// returns an independent connection pool.
func DirectClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16},
		Timeout:   timeout,
	}
}
