package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestHangUpBecomes502AndOtherErrorsPassThrough(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPost, "http://10.0.0.1:8080/orders", nil)
	for _, err := range []error{io.EOF, io.ErrUnexpectedEOF, &net.OpError{Op: "read", Err: syscall.ECONNRESET}} {
		resp, got := badGatewayOnHangUp(req, nil, err)
		if got != nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%v: got %v, %v; want a 502 answer", err, resp, got)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if len(body) == 0 || resp.ContentLength != int64(len(body)) {
			t.Errorf("%v: 502 body %q, content length %d", err, body, resp.ContentLength)
		}
	}
	for _, err := range []error{
		&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, // skipper answers 502 itself
		&net.OpError{Op: "read", Err: timeoutErr{}},         // skipper answers 504
		errors.New("something else"),
	} {
		if resp, got := badGatewayOnHangUp(req, nil, err); got == nil || resp != nil {
			t.Errorf("%v: converted to %v, want the error passed through", err, resp)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if resp, got := badGatewayOnHangUp(req.WithContext(ctx), nil, io.EOF); got == nil || resp != nil {
		t.Error("a client that went away must stay an error (skipper logs 499)")
	}
}
