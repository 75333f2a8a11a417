package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/bulkhead-router/bulkhead/internal/otlpreceiver"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// TestTracingToPodAndCollector: a real router with -tracing-endpoint
// pointing at an OTLP receiver in the test, a real Ingress and pod. The
// pod receives a traceparent whose parent is the attempt span the router
// exported (a child of its server span, with the pod's address), never
// the client's; the access log line of the request, on the router's
// stdout, carries the same trace id. Behind a second router that trusts
// its loopback peers' traceparent, the client's trace goes on.
func TestTracingToPodAndCollector(t *testing.T) {
	rcv, err := otlpreceiver.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rcv.Close)
	e := newEnv(t, "-tracing-endpoint", "http://"+rcv.Addr, "-tracing-sample", "1", "-tracing-service-name", "edge-e2e")
	pods := e.startPods("shop", "web", 1)
	e.ingressClass("bulkhead", false)
	e.apply(ingress("shop", "web", "bulkhead", rule("shop.example", path("/", prefix(), "web"))))
	e.router.WaitReady(30 * time.Second)
	e.expectPod("shop.example", "/", "web", "")

	// The client sends a sampled traceparent of its own; the router's
	// client is not a trusted proxy, so it must be ignored.
	const clientTraceID = "0af7651916cd43dd8448eb211c80319c"
	a, err := e.get("shop.example", "/traced/cart", "Traceparent", "00-"+clientTraceID+"-b7ad6b7169203331-01", "X-Request-Id", "trace-e2e-1")
	if err != nil || a.status != 200 || a.echo.Service != "web" {
		t.Fatalf("request: %v %d %q", err, a.status, a.echo.Service)
	}
	tp := a.echo.Headers.Values("Traceparent")
	if len(tp) != 1 || len(tp[0]) != 55 || !strings.HasPrefix(tp[0], "00-") || !strings.HasSuffix(tp[0], "-01") {
		t.Fatalf("pod received traceparent %q", tp)
	}
	traceID, parentID := tp[0][3:35], tp[0][36:52]
	if traceID == clientTraceID {
		t.Errorf("the pod's trace is the untrusted client's: %s", tp[0])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	spans, err := rcv.WaitFor(ctx, func(s []otlpreceiver.Span) bool {
		n := 0
		for _, sp := range s {
			if sp.TraceID == traceID {
				n++
			}
		}
		return n >= 2
	})
	if err != nil {
		t.Fatalf("spans of trace %s: %v (received %+v)", traceID, err, spans)
	}
	var server, attempt *otlpreceiver.Span
	for _, sp := range rcv.Trace(traceID) {
		switch sp.Kind {
		case tracepb.Span_SPAN_KIND_SERVER:
			server = &sp
		case tracepb.Span_SPAN_KIND_CLIENT:
			attempt = &sp
		}
	}
	if server == nil || attempt == nil {
		t.Fatalf("trace %s: %+v", traceID, rcv.Trace(traceID))
	}
	if attempt.SpanID != parentID {
		t.Errorf("pod's parent span %s, the router exported attempt span %s", parentID, attempt.SpanID)
	}
	if attempt.ParentSpanID != server.SpanID || server.ParentSpanID != "" {
		t.Errorf("attempt's parent %s, server span %s (its parent %q)", attempt.ParentSpanID, server.SpanID, server.ParentSpanID)
	}
	pod := pods[0]
	if attempt.Attributes["server.address"] != pod.IP.String() || attempt.Attributes["server.port"] != int64(pod.Port) ||
		attempt.Attributes["http.response.status_code"] != int64(200) || attempt.Attributes["bulkhead.breaker"] != "closed" {
		t.Errorf("attempt span attributes %v, pod %s", attempt.Attributes, pod.Addr)
	}
	if server.Attributes["url.path"] != "/traced/cart" || server.Attributes["server.address"] != "shop.example" ||
		server.Attributes["bulkhead.backend"] != "shop/web:80" || server.Attributes["http.response.status_code"] != int64(200) ||
		!strings.Contains(fmt.Sprint(server.Attributes["bulkhead.route"]), "shop") {
		t.Errorf("server span attributes %v", server.Attributes)
	}
	if server.Resource["service.name"] != "edge-e2e" {
		t.Errorf("resource %v", server.Resource)
	}

	// The access log line of that request (the router's stdout).
	e.eventually(10*time.Second, "access log line of the traced request", func() error {
		for _, l := range strings.Split(e.router.Log(), "\n") {
			if !strings.Contains(l, `"request_id":"trace-e2e-1"`) {
				continue
			}
			var line struct {
				TraceID string `json:"trace_id"`
				Path    string `json:"path"`
			}
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				return fmt.Errorf("%v: %s", err, l)
			}
			if line.TraceID != traceID || line.Path != "/traced/cart" {
				return fmt.Errorf("line %s, want trace id %s", l, traceID)
			}
			return nil
		}
		return errNotYet
	})

	// A second router that trusts traceparent from its loopback peers
	// (-trusted-proxies, -tracing-trust-parent): the same client's trace
	// goes on to the pod, under the attempt span of that router, and is
	// exported although the ratio is 0.
	trusting := testrouter.Start(t, testrouter.Options{Kubeconfig: e.cp.Kubeconfig(), Args: []string{"-tracing-endpoint", "http://" + rcv.Addr,
		"-tracing-sample", "0", "-trusted-proxies", "127.0.0.0/8", "-tracing-trust-parent", "-access-log=false"}})
	trusting.WaitReady(30 * time.Second)
	var echo testpods.Echo
	e.eventually(10*time.Second, "the trusting router routes shop.example", func() error {
		req, err := http.NewRequest(http.MethodGet, trusting.ProxyURL+"/trusted", nil)
		if err != nil {
			return err
		}
		req.Host = "shop.example"
		req.Header.Set("Traceparent", "00-"+clientTraceID+"-b7ad6b7169203331-01")
		resp, err := e.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		echo, err = testpods.DecodeEcho(resp.Body)
		return err
	})
	tp = echo.Headers.Values("Traceparent")
	if len(tp) != 1 || len(tp[0]) != 55 || tp[0][3:35] != clientTraceID || !strings.HasSuffix(tp[0], "-01") {
		t.Fatalf("behind the trusting router the pod received %q, want the client's trace %s continued", tp, clientTraceID)
	}
	spans, err = rcv.WaitFor(ctx, func(s []otlpreceiver.Span) bool {
		attempt, server := false, false
		for _, sp := range s {
			attempt = attempt || sp.SpanID == tp[0][36:52]
			server = server || sp.TraceID == clientTraceID && sp.Kind == tracepb.Span_SPAN_KIND_SERVER
		}
		return attempt && server
	})
	if err != nil {
		t.Fatalf("the trusting router's attempt span %s and server span: %v", tp[0][36:52], err)
	}
	servers := 0
	for _, sp := range rcv.Trace(clientTraceID) {
		if sp.Kind == tracepb.Span_SPAN_KIND_SERVER {
			servers++
			if sp.ParentSpanID != "b7ad6b7169203331" {
				t.Errorf("server span %s's parent %s, want the client's span", sp.SpanID, sp.ParentSpanID)
			}
		}
	}
	if servers == 0 {
		t.Errorf("no server span of the client's trace: %+v", rcv.Trace(clientTraceID))
	}
}
