package upstream

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The replay buffer never holds more than the limit (64 KiB), whatever
// the body's framing; a body over it is streamed, byte for byte.
func TestReplayBufferNeverExceedsTheLimit(t *testing.T) {
	u, err := New(Config{}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &retrier{u: u}
	const limit = 64 << 10
	for _, tc := range []struct {
		name       string
		size       int
		known      bool
		replayable bool
		maxCap     int
	}{
		{"60,000 bytes with Content-Length", 60000, true, true, 60000},
		{"60,000 bytes chunked", 60000, false, true, limit},
		{"exactly the limit, chunked", limit, false, true, limit},
		{"one byte over the limit, chunked", limit + 1, false, false, 0},
		{"70,000 bytes chunked", 70000, false, false, 0},
		{"100 bytes chunked", 100, false, true, 512},
	} {
		payload := bytes.Repeat([]byte("0123456789"), tc.size/10+1)[:tc.size]
		req, _ := http.NewRequest(http.MethodPut, "http://pod/", io.NopCloser(iotestHalfReader{bytes.NewReader(payload)}))
		if tc.known {
			req.ContentLength = int64(tc.size)
		}
		ab, err := r.bufferBody(req)
		body, hasBody, replayable := ab.buf, ab.has, !ab.once
		if err != nil || replayable != tc.replayable {
			t.Errorf("%s: replayable %v, err %v; want %v", tc.name, replayable, err, tc.replayable)
			continue
		}
		if replayable {
			if !hasBody || !bytes.Equal(body, payload) || cap(body) > tc.maxCap {
				t.Errorf("%s: buffered %d bytes in a buffer of %d, want all %d in at most %d", tc.name, len(body), cap(body), tc.size, tc.maxCap)
			}
			continue
		}
		streamed, err := io.ReadAll(req.Body)
		if err != nil || !bytes.Equal(streamed, payload) {
			t.Errorf("%s: the streamed body (%d bytes, %v) is not the original", tc.name, len(streamed), err)
		}
	}
}

func TestReplayBufferPassesReadErrors(t *testing.T) {
	u, _ := New(Config{}, prometheus.NewRegistry(), nil)
	r := &retrier{u: u}
	req, _ := http.NewRequest(http.MethodPut, "http://pod/", io.NopCloser(io.MultiReader(strings.NewReader("abc"), errReader{})))
	if _, err := r.bufferBody(req); err != errBoom {
		t.Errorf("err = %v, want the body's read error", err)
	}
}

// iotestHalfReader returns at most half of what is asked each time, as a
// network connection may.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) { return h.r.Read(p[:(len(p)+1)/2]) }

type errReader struct{}

var errBoom = io.ErrClosedPipe

func (errReader) Read([]byte) (int, error) { return 0, errBoom }
