package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bulkhead-router/bulkhead/admin"
	"github.com/bulkhead-router/bulkhead/dataclient"
)

// The subcommands ask a running router's admin endpoint and print its
// answer: "bulkhead explain URL", "bulkhead routes", "bulkhead status".
// They are for kubectl exec into a router's pod, where the admin listener
// (loopback by default) is reachable; they read nothing of Kubernetes.

// subcommands maps a first argument to its subcommand.
var subcommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"explain": runExplain,
	"routes":  runRoutes,
	"status":  runStatus,
}

// runSubcommand runs the subcommand args[0] names; ok is false when it
// names none (the router's flags follow).
func runSubcommand(args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	sub, ok := subcommands[args[0]]
	if !ok {
		return 0, false
	}
	return sub(args[1:], stdout, stderr), true
}

// adminClient is how a subcommand reaches the admin endpoint.
type adminClient struct {
	base  string // http://host:port
	token []byte
	json  bool
	http  *http.Client
}

// adminFlags registers the flags every subcommand has.
func adminFlags(fs *flag.FlagSet) (address, tokenFile *string, asJSON *bool) {
	address = fs.String("admin-address", "127.0.0.1:9911", "HOST:PORT of the router's admin endpoint (its -admin-address; an unspecified host means this host's loopback)")
	tokenFile = fs.String("admin-token-file", "", "file holding the bearer token of the router's -admin-token-file")
	asJSON = fs.Bool("json", false, "print the endpoint's JSON instead of text")
	return
}

func newAdminClient(address, tokenFile string, asJSON bool) (*adminClient, error) {
	base, err := adminBase(address)
	if err != nil {
		return nil, err
	}
	c := &adminClient{base: base, json: asJSON, http: &http.Client{Timeout: 10 * time.Second}}
	if tokenFile != "" {
		if c.token, err = admin.LoadToken(tokenFile); err != nil {
			return nil, fmt.Errorf("-admin-token-file: %w", err)
		}
	}
	return c, nil
}

// adminBase turns -admin-address into a URL. The router's own flag may
// name no host (":9911") or an unspecified one ("0.0.0.0:9911"): those
// listen on loopback too, so that is asked.
func adminBase(address string) (string, error) {
	address = strings.TrimSuffix(strings.TrimPrefix(address, "http://"), "/")
	host, port, err := net.SplitHostPort(address)
	if err != nil || port == "" {
		return "", fmt.Errorf("-admin-address %q: want HOST:PORT, such as 127.0.0.1:9911", address)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// get asks the admin endpoint for path and returns the body of a 200
// answer; any other outcome is an error worded for the operator.
func (c *adminClient) get(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.json {
		req.Header.Set("Accept", "application/json")
	}
	if len(c.token) > 0 {
		req.Header.Set("Authorization", "Bearer "+string(c.token))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the router's admin endpoint at %s (is the router running, and is this its -admin-address?): %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the admin endpoint's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if resp.StatusCode == http.StatusUnauthorized && len(c.token) == 0 {
			msg += " (give the router's token with -admin-token-file)"
		}
		return nil, fmt.Errorf("the admin endpoint answered %s: %s", resp.Status, msg)
	}
	return body, nil
}

// parseInterleaved parses fs over args where positional arguments may come
// before, between or after the flags ("explain URL -H ..."); it returns
// the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// headerFlags collects repeated -H 'Name: value' flags.
type headerFlags []string

func (h *headerFlags) String() string { return strings.Join(*h, ", ") }

func (h *headerFlags) Set(v string) error {
	name, _, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q: want 'Name: value'", v)
	}
	*h = append(*h, v)
	return nil
}

// subcommandFlags makes a subcommand's flag set: usage on -help, errors
// reported by the caller in one line.
func subcommandFlags(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bulkhead "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: %s\n\nflags:\n", usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// finish reports a subcommand's outcome: 0 on success, 1 when the router
// could not answer, 2 for a usage error.
func finish(name string, stderr io.Writer, err error, usage bool) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case usage:
		fmt.Fprintf(stderr, "bulkhead %s: %v (see bulkhead %s -help)\n", name, err, name)
		return 2
	}
	fmt.Fprintf(stderr, "bulkhead %s: %v\n", name, err)
	return 1
}

// runExplain: bulkhead explain URL [-H 'Name: value']... [-X METHOD]
// [-port N] [-remote IP].
func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := subcommandFlags("explain", "bulkhead explain URL [-H 'Name: value']... [-X METHOD] [-port GATEWAY-PORT] [-remote CLIENT-IP] [-json]", stdout)
	var headers headerFlags
	fs.Var(&headers, "H", "a request header 'Name: value' (repeatable)")
	method := fs.String("X", "GET", "the request method")
	port := fs.Int("port", 0, "the Gateway listener port the request arrives on; 0: the proxy listener's")
	remote := fs.String("remote", "", "the client's IP address (decides whose forwarded headers are believed); empty: an untrusted client")
	address, tokenFile, asJSON := adminFlags(fs)
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		return finish("explain", stderr, err, true)
	}
	if len(positional) != 1 {
		return finish("explain", stderr, errors.New("want exactly one URL, such as https://shop.example.com/cart"), true)
	}
	target := positional[0]
	if !strings.Contains(target, "://") {
		target = "http://" + target // "shop.example.com/cart", as curl takes it
	}
	q := url.Values{"url": {target}, "method": {*method}}
	for _, h := range headers {
		q.Add("header", h)
	}
	if *port != 0 {
		q.Set("port", fmt.Sprint(*port))
	}
	if *remote != "" {
		q.Set("remote", *remote)
	}
	c, err := newAdminClient(*address, *tokenFile, *asJSON)
	if err != nil {
		return finish("explain", stderr, err, true)
	}
	body, err := c.get("/explain?" + q.Encode())
	if err == nil {
		_, err = stdout.Write(body)
	}
	return finish("explain", stderr, err, false)
}

// runRoutes: bulkhead routes, the live route table with each route's
// origin.
func runRoutes(args []string, stdout, stderr io.Writer) int {
	fs := subcommandFlags("routes", "bulkhead routes [-json]", stdout)
	address, tokenFile, asJSON := adminFlags(fs)
	positional, err := parseInterleaved(fs, args)
	if err == nil && len(positional) > 0 {
		err = fmt.Errorf("unexpected argument %q", positional[0])
	}
	if err != nil {
		return finish("routes", stderr, err, true)
	}
	c, err := newAdminClient(*address, *tokenFile, *asJSON)
	if err != nil {
		return finish("routes", stderr, err, true)
	}
	body, err := c.get("/routes")
	if err == nil {
		_, err = stdout.Write(body)
	}
	return finish("routes", stderr, err, false)
}

// runStatus: bulkhead status, the route source's state.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := subcommandFlags("status", "bulkhead status [-json]", stdout)
	address, tokenFile, asJSON := adminFlags(fs)
	positional, err := parseInterleaved(fs, args)
	if err == nil && len(positional) > 0 {
		err = fmt.Errorf("unexpected argument %q", positional[0])
	}
	if err != nil {
		return finish("status", stderr, err, true)
	}
	c, err := newAdminClient(*address, *tokenFile, true) // /status is JSON only
	if err != nil {
		return finish("status", stderr, err, true)
	}
	body, err := c.get("/status")
	if err == nil && *asJSON {
		_, err = stdout.Write(body)
	} else if err == nil {
		var st dataclient.Status
		if err = json.Unmarshal(body, &st); err != nil {
			err = fmt.Errorf("the admin endpoint's /status is not what this binary reads (another version?): %w", err)
		} else {
			_, err = io.WriteString(stdout, statusText(st, time.Now()))
		}
	}
	return finish("status", stderr, err, false)
}

// statusText is /status for a terminal.
func statusText(st dataclient.Status, now time.Time) string {
	var b strings.Builder
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
	}
	a := st.APIServer
	if a.Connected {
		fmt.Fprintf(&b, "API server:  connected since %s\n", ago(a.Since))
	} else {
		fmt.Fprintf(&b, "API server:  NOT connected since %s\n", ago(a.Since))
	}
	fmt.Fprintf(&b, "last sync:   %s\n", ago(a.LastSync))
	if a.LastError != "" {
		fmt.Fprintf(&b, "last error:  %s\n", a.LastError)
	}
	t := st.Table
	switch {
	case !t.Loaded:
		b.WriteString("route table: none loaded yet (not serving)\n")
	default:
		fmt.Fprintf(&b, "route table: %d routes from %s, version %d, applied %s\n", t.Routes, t.Source, t.Version, ago(t.AppliedAt))
		if !t.SavedAt.IsZero() {
			fmt.Fprintf(&b, "             stored table saved %s\n", ago(t.SavedAt))
		}
	}
	if h := st.Hold; h != nil {
		fmt.Fprintf(&b, "deletion guard: HOLDING %s (since %s, released %s)\n", h.Summary, ago(h.Since), h.ReleaseAt.UTC().Format(time.RFC3339))
		for _, o := range h.Objects {
			fmt.Fprintf(&b, "  %s %s/%s since %s\n", o.Kind, o.Namespace, o.Name, ago(o.Since))
		}
		if h.Confirm != "" {
			fmt.Fprintf(&b, "  to apply it now: %s\n", h.Confirm)
		}
	} else {
		b.WriteString("deletion guard: nothing held\n")
	}
	return b.String()
}
