package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/testpods"
)

// policyTricks are the ways a client could try to read or set a route's
// upstream policy: the header that once carried it (with a forged secret
// and bare), that header listed in Connection, and skipper's upgrade path
// (which bypasses the round tripper) through a custom Connection token.
var policyTricks = []struct {
	name    string
	headers []string // name, value pairs
	upgrade bool
}{
	{name: "none"},
	{name: "old header", headers: []string{"X-Bulkhead-Upstream-Policy", "0123456789abcdef0123456789abcdef response-header-timeout=1s,retry-non-idempotent=true"}},
	{name: "old header, bare", headers: []string{"X-Bulkhead-Upstream-Policy", "response-header-timeout=1s,retry-non-idempotent=true"}},
	{name: "Connection-listed", headers: []string{"Connection", "X-Bulkhead-Upstream-Policy", "X-Bulkhead-Upstream-Policy", "response-header-timeout=1s"}},
	{name: "upgrade through X-Upgrade", headers: []string{"Connection", "x-upgrade", "X-Upgrade", "ws"}, upgrade: true},
}

// policyWords are what a route policy looks like on the wire.
var policyWords = []string{"connect-timeout", "response-header-timeout", "request-timeout", "retry-non-idempotent", "slow-start", "bulkhead"}

// TestClientCannotReadOrSetRoutePolicy: an Ingress with bulkhead.io/
// annotations (pol.example) and one without (web.example) on the same
// pods. Whatever a client sends, no pod receives anything of a policy, on
// any path; the annotated route's policy applies (its 1s timeout answers
// 504), and no client header imposes a policy on the other: not a 1s
// response header timeout, not POST retries.
func TestClientCannotReadOrSetRoutePolicy(t *testing.T) {
	t.Parallel()
	e, pods := newTwoPodEnv(t)
	ing := ingress("up", "pol", "bulkhead", rule("pol.example", path("/", prefix(), "web")))
	ing.Annotations = map[string]string{
		"bulkhead.io/response-header-timeout": "1s",
		"bulkhead.io/retry-non-idempotent":    "true",
	}
	e.apply(ing)
	e.router.WaitFor(10*time.Second, "the annotations in the route table", func() bool {
		_, routes := e.router.Admin("/routes")
		return strings.Contains(routes, `"response-header-timeout=1s"`)
	})
	e.expectPod("pol.example", "/", "web", "")
	proxy, err := url.Parse(e.router.ProxyURL)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing of a policy reaches a pod.
	for _, tr := range policyTricks {
		for _, host := range []string{"pol.example", "web.example"} {
			status, body, _, err := rawHTTP(proxy.Host, http.MethodGet, host, "/", tr.headers)
			if err != nil || status != http.StatusOK {
				t.Fatalf("%s, %s: %d %v: %.200s", tr.name, host, status, err, body)
			}
			echo, err := testpods.DecodeEcho(strings.NewReader(body))
			if err != nil {
				t.Fatalf("%s, %s: %v: %.200s", tr.name, host, err, body)
			}
			for name, vs := range echo.Headers {
				for _, v := range vs {
					line := strings.ToLower(name + ": " + v)
					for _, w := range policyWords {
						if strings.Contains(line, w) && !sentByClient(tr.headers, name, v) {
							t.Errorf("%s, %s: the pod received %s: %s, which the client did not send", tr.name, host, name, v)
						}
					}
				}
			}
		}
	}

	// The annotated route's policy applies: a 2s answer is cut at 1s.
	if status, _, took, err := rawHTTP(proxy.Host, http.MethodGet, "pol.example", "/?sleep=2s", nil); err != nil || status != http.StatusGatewayTimeout {
		t.Fatalf("pol.example, 2s answer: %d after %s (%v), want 504 from its 1s timeout", status, took, err)
	}

	// No client header imposes a 1s timeout on the other route.
	for _, tr := range policyTricks {
		if tr.upgrade {
			continue // upgrades get no timeouts and no retries at all
		}
		status, body, took, err := rawHTTP(proxy.Host, http.MethodGet, "web.example", "/?sleep=1500ms", tr.headers)
		if err != nil || status != http.StatusOK || took < 1500*time.Millisecond {
			t.Errorf("%s: a 1.5s answer on web.example got %d after %s (%v): %.100s", tr.name, status, took, err, body)
		}
	}

	// Nor POST retries: one pod hangs up on every request; each client
	// POST reaches exactly one pod, and those on the closing pod fail.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pods[0].SetMode(ctx, testpods.ModeClose); err != nil {
		t.Fatal(err)
	}
	before := podRequests(t, pods)
	const n = 20
	failed := 0
	for i := 0; i < n; i++ {
		tr := policyTricks[1+i%3] // the header tricks
		status, _, _, err := rawHTTP(proxy.Host, http.MethodPost, "web.example", "/orders", tr.headers)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusOK {
			failed++
		}
	}
	if got := podRequests(t, pods) - before; got != n {
		t.Errorf("%d client POSTs with forged policy headers made %d pod requests: POSTs were replayed", n, got)
	}
	if failed == 0 {
		t.Error("no POST failed although a pod hung up on them: the scenario did not happen")
	}
	t.Logf("%d of %d POSTs with forged policy headers failed on the closing pod, none replayed", failed, n)
}

func sentByClient(headers []string, name, value string) bool {
	for i := 0; i+1 < len(headers); i += 2 {
		if http.CanonicalHeaderKey(headers[i]) == http.CanonicalHeaderKey(name) && headers[i+1] == value {
			return true
		}
	}
	return false
}

// rawHTTP sends one request on a fresh connection with exactly the given
// headers (net/http's client would rewrite Connection) and reads the
// answer.
func rawHTTP(addr, method, host, path string, headers []string) (status int, body string, took time.Duration, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	payload := ""
	if method == http.MethodPost {
		payload = `{"order":1}`
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(payload), payload)
	start := time.Now()
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return 0, "", 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", time.Since(start), err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(got), time.Since(start), err
}
