package podnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Address plan. Every Host gets one /24 out of Range; the index of
// that /24 (its third octet) is part of every name the Host creates, so
// a leftover can be traced back to the Host that made it.
var Range = netip.MustParsePrefix("10.213.0.0/16")

const (
	// namePrefix starts every interface and network namespace name we
	// create. "bhtp" = bulkhead test pod.
	namePrefix = "bhtp"
	// podInterface is the pod's side of its veth pair, inside its netns.
	podInterface = "eth0"
	// guardProto tags the guard route (see ensureGuardRoute) so it can be
	// told apart from a route someone else added for the same prefix.
	guardProto = "213"
	// guardMetric is the largest metric, the lowest priority.
	guardMetric = "4294967295"
)

var (
	ourLinkName  = regexp.MustCompile(`^` + namePrefix + `(\d{1,3})[bh]\d*$`)
	ourNetnsName = regexp.MustCompile(`^` + namePrefix + `(\d{1,3})-`)
	ownerFile    = regexp.MustCompile(`^(\d{1,3})\.owner$`)
)

func subnetFor(index int) netip.Prefix {
	base := Range.Addr().As4()
	base[2] = byte(index)
	return netip.PrefixFrom(netip.AddrFrom4(base), 24)
}

func hostAddr(subnet netip.Prefix, host int) netip.Addr {
	a := subnet.Addr().As4()
	a[3] = byte(host)
	return netip.AddrFrom4(a)
}

// Interface names must fit IFNAMSIZ (15 characters): "bhtp255b" and
// "bhtp255h254" do.
func bridgeName(index int) string         { return fmt.Sprintf("%s%db", namePrefix, index) }
func hostVethName(index, host int) string { return fmt.Sprintf("%s%dh%d", namePrefix, index, host) }

// netnsName carries the pod name too, so `ip netns list` is readable while
// debugging; only the "bhtp<index>-" prefix matters to the code.
func netnsName(index, host int, pod string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(pod))
	if len(clean) > 40 {
		clean = clean[:40]
	}
	return fmt.Sprintf("%s%d-%d-%s", namePrefix, index, host, clean)
}

// Tool runs the iproute2 `ip` command.
type Tool struct {
	path string
}

// run executes ip with args and returns its standard output. The error
// carries ip's standard error, which says what went wrong.
func (t Tool) Run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, t.path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &ipError{args: args, stderr: strings.TrimSpace(stderr.String()), err: err}
	}
	return stdout.Bytes(), nil
}

type ipError struct {
	args   []string
	stderr string
	err    error
}

func (e *ipError) Error() string {
	return fmt.Sprintf("ip %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}

func (e *ipError) Unwrap() error { return e.err }

// isNotFound says whether ip failed because the object is already gone,
// which cleanup treats as success.
func isNotFound(err error) bool {
	var ie *ipError
	if !errors.As(err, &ie) {
		return false
	}
	s := ie.stderr
	return strings.Contains(s, "Cannot find device") || strings.Contains(s, "No such file") ||
		strings.Contains(s, "does not exist") || strings.Contains(s, "No such process")
}

func isExists(err error) bool {
	var ie *ipError
	return errors.As(err, &ie) && strings.Contains(ie.stderr, "File exists")
}

func isPermission(err error) bool {
	var ie *ipError
	return errors.As(err, &ie) && strings.Contains(ie.stderr, "Operation not permitted")
}

func (t Tool) LinkNames(ctx context.Context) ([]string, error) {
	out, err := t.Run(ctx, "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("parse ip -j link show: %w", err)
	}
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.Name
	}
	return names, nil
}

func (t Tool) NetnsNames(ctx context.Context) ([]string, error) {
	out, err := t.Run(ctx, "-j", "netns", "list")
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil // older ip prints nothing when there are none
	}
	var list []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("parse ip -j netns list: %w", err)
	}
	names := make([]string, len(list))
	for i, n := range list {
		names[i] = n.Name
	}
	return names, nil
}

// netnsPIDs lists the processes running in a named network namespace.
func (t Tool) NetnsPIDs(ctx context.Context, netns string) ([]int, error) {
	out, err := t.Run(ctx, "netns", "pids", netns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

type route struct {
	Type     string `json:"type"`
	Dst      string `json:"dst"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
}

// prefix returns the destination of r; host routes are printed without a
// length.
func (r route) prefix() (netip.Prefix, bool) {
	if r.Dst == "" || r.Dst == "default" {
		return netip.Prefix{}, false
	}
	if p, err := netip.ParsePrefix(r.Dst); err == nil {
		return p, true
	}
	if a, err := netip.ParseAddr(r.Dst); err == nil && a.Is4() {
		return netip.PrefixFrom(a, 32), true
	}
	return netip.Prefix{}, false
}

func (r route) isGuard() bool {
	p, ok := r.prefix()
	return ok && r.Type == "unreachable" && p == Range
}

func (t Tool) routes(ctx context.Context) ([]route, error) {
	out, err := t.Run(ctx, "-4", "-j", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	var rs []route
	if err := json.Unmarshal(out, &rs); err != nil {
		return nil, fmt.Errorf("parse ip -j route show: %w", err)
	}
	return rs, nil
}

// subnetInUse says whether anything on the host already routes or owns
// addresses in subnet. Routes broader than Range (a default route, a
// VPN's 10.0.0.0/8) do not count: our more specific routes keep traffic for
// our pods local, and nobody else uses our /16 (that is checked here too).
func subnetInUse(routes []route, subnet netip.Prefix) bool {
	for _, r := range routes {
		p, ok := r.prefix()
		if !ok || p.Bits() < Range.Bits() || r.isGuard() {
			continue
		}
		if p.Overlaps(subnet) {
			return true
		}
	}
	return false
}

// Host is one owner's share of the root network namespace: a
// bridge holding the gateway address of a /24, and the veths of its pods.
type Host struct {
	ip      Tool
	log     *slog.Logger
	index   int
	subnet  netip.Prefix
	gateway netip.Addr
	bridge  string
	owner   string // path of the ownership record
}

// Pod is the plumbing of one pod.
type Pod struct {
	// Netns is the name of the pod's network namespace.
	Netns string
	// HostVeth is the root namespace end of its veth pair, a bridge port.
	HostVeth string
	// IP is the pod's address on eth0.
	IP netip.Addr
}

// NewHost cleans leftovers of dead owners, picks a /24 nobody uses
// and creates its bridge. Everything happens under the host-wide lock so
// Hosts in other processes never pick the same /24.
func NewHost(ctx context.Context, ip Tool, log *slog.Logger) (*Host, error) {
	dir, err := stateDir()
	if err != nil {
		return nil, err
	}
	unlock, err := lockHost(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if err := cleanLeftovers(ctx, ip, log, dir); err != nil {
		// A leftover we cannot remove only costs its /24; carry on.
		log.Warn("could not remove all leftovers of earlier runs", "err", err)
	}
	routes, err := ip.routes(ctx)
	if err != nil {
		return nil, err
	}
	links, err := ip.LinkNames(ctx)
	if err != nil {
		return nil, err
	}
	existing := make(map[string]bool, len(links))
	for _, l := range links {
		existing[l] = true
	}

	// Random order: a recently closed Host's addresses may still be in
	// some test's EndpointSlice, so reusing them at once is the worst pick.
	self := currentProcess()
	for _, index := range rand.Perm(256) {
		subnet := subnetFor(index)
		owner := filepath.Join(dir, fmt.Sprintf("%d.owner", index))
		if _, err := os.Stat(owner); err == nil {
			continue // a live Host (dead ones were cleaned above)
		}
		if existing[bridgeName(index)] || subnetInUse(routes, subnet) {
			continue
		}
		if err := os.WriteFile(owner, []byte(self.String()+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("podnet: record ownership: %w", err)
		}
		n := &Host{
			ip: ip, log: log, index: index, subnet: subnet,
			gateway: hostAddr(subnet, 1), bridge: bridgeName(index), owner: owner,
		}
		if err := n.createBridge(ctx); err != nil {
			os.Remove(owner)
			if isExists(err) {
				continue // lost a race with something outside our lock
			}
			if isPermission(err) {
				return nil, &MissingPreconditionError{Missing: []string{
					"permission to create network interfaces (CAP_NET_ADMIN): " + err.Error()}}
			}
			return nil, err
		}
		if err := ensureGuardRoute(ctx, ip, routes); err != nil {
			n.deleteBridge(ctx)
			os.Remove(owner)
			return nil, err
		}
		log.Info("host network ready", "bridge", n.bridge, "subnet", subnet.String())
		return n, nil
	}
	return nil, fmt.Errorf("podnet: no free /24 left in %s (all in use or routed on this host)", Range)
}

func (n *Host) createBridge(ctx context.Context) error {
	if _, err := n.ip.Run(ctx, "link", "add", n.bridge, "type", "bridge"); err != nil {
		return err
	}
	steps := [][]string{
		{"addr", "add", netip.PrefixFrom(n.gateway, 24).String(), "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	}
	for _, args := range steps {
		if _, err := n.ip.Run(ctx, args...); err != nil {
			n.deleteBridge(ctx)
			return err
		}
	}
	return nil
}

func (n *Host) deleteBridge(ctx context.Context) error {
	if _, err := n.ip.Run(ctx, "link", "del", n.bridge); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// ensureGuardRoute makes the whole Range unreachable from the root
// namespace, except for the /24s of live Hosts (their connected routes
// are more specific). Without it a packet for a pod whose Host is gone,
// e.g. from a stale EndpointSlice or a client still running after Close,
// follows the default route off the host, and some networks answer it.
//
// The route stays after the last Host closes, on purpose: traffic for
// these addresses may only ever reach our namespaces. It is harmless to
// everything else: nothing else on the host uses the range (NewHost
// checks), and its metric is the lowest priority, so a route someone adds
// later for the same prefix wins over it. `ip route del unreachable
// 10.213.0.0/16 proto 213` removes it by hand.
func ensureGuardRoute(ctx context.Context, ip Tool, routes []route) error {
	for _, r := range routes {
		if r.isGuard() {
			return nil
		}
	}
	_, err := ip.Run(ctx, "route", "add", "unreachable", Range.String(), "proto", guardProto, "metric", guardMetric)
	if err != nil && !isExists(err) {
		return fmt.Errorf("podnet: add guard route: %w", err)
	}
	return nil
}

// AddPod creates the pod's netns and veth pair and checks that the root
// namespace routes the pod's address to our bridge and nowhere else.
func (n *Host) AddPod(ctx context.Context, host int, podName string) (Pod, error) {
	pn := Pod{
		Netns:    netnsName(n.index, host, podName),
		HostVeth: hostVethName(n.index, host),
		IP:       hostAddr(n.subnet, host),
	}
	steps := [][]string{
		{"netns", "add", pn.Netns},
		// The peer is created directly inside the netns, so no second
		// eth0 ever appears in the root namespace.
		{"link", "add", pn.HostVeth, "type", "veth", "peer", "name", podInterface, "netns", pn.Netns},
		{"link", "set", pn.HostVeth, "master", n.bridge},
		{"link", "set", pn.HostVeth, "up"},
		{"-n", pn.Netns, "addr", "add", netip.PrefixFrom(pn.IP, 24).String(), "dev", podInterface},
		{"-n", pn.Netns, "link", "set", "lo", "up"},
		{"-n", pn.Netns, "link", "set", podInterface, "up"},
		{"-n", pn.Netns, "route", "add", "default", "via", n.gateway.String()},
	}
	for _, args := range steps {
		if _, err := n.ip.Run(ctx, args...); err != nil {
			n.RemovePod(context.WithoutCancel(ctx), pn)
			return Pod{}, fmt.Errorf("podnet: plumb pod %s: %w", podName, err)
		}
	}
	if err := n.checkRoute(ctx, pn.IP); err != nil {
		n.RemovePod(context.WithoutCancel(ctx), pn)
		return Pod{}, err
	}
	return pn, nil
}

// checkRoute refuses a pod address that the root namespace would send
// anywhere but our bridge (policy routing, a more specific route), because
// then test traffic would leave the host.
func (n *Host) checkRoute(ctx context.Context, addr netip.Addr) error {
	out, err := n.ip.Run(ctx, "-4", "-j", "route", "get", addr.String())
	if err != nil {
		return fmt.Errorf("podnet: route to pod address %s: %w", addr, err)
	}
	var rs []route
	if err := json.Unmarshal(out, &rs); err != nil {
		return fmt.Errorf("parse ip -j route get: %w", err)
	}
	if len(rs) != 1 || rs[0].Dev != n.bridge {
		return fmt.Errorf("podnet: the host routes pod address %s via %s, not bridge %s; refusing to send test traffic there",
			addr, strings.TrimSpace(string(out)), n.bridge)
	}
	return nil
}

// RemovePod deletes the pod's veth pair and netns. Processes inside must be
// gone already, or the netns lives on (unnamed) until they exit.
func (n *Host) RemovePod(ctx context.Context, pn Pod) error {
	var errs []error
	// Deleting one end of a veth pair deletes both; doing it explicitly
	// rather than through the netns means it is gone when we return, not
	// when the kernel gets round to destroying the namespace.
	if _, err := n.ip.Run(ctx, "link", "del", pn.HostVeth); err != nil && !isNotFound(err) {
		errs = append(errs, err)
	}
	if _, err := n.ip.Run(ctx, "netns", "del", pn.Netns); err != nil && !isNotFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// TearDown deletes the bridge and gives the /24 back.
func (n *Host) TearDown(ctx context.Context) error {
	var errs []error
	if err := n.deleteBridge(ctx); err != nil {
		errs = append(errs, err)
	}
	dir := filepath.Dir(n.owner)
	unlock, err := lockHost(ctx, dir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer unlock()
	if err := os.Remove(n.owner); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cleanLeftovers removes what Hosts of dead processes left behind:
// processes in our netns, our netns, veths and bridges, ownership records
// and testpod build directories. Callers hold the host lock.
func cleanLeftovers(ctx context.Context, ip Tool, log *slog.Logger, dir string) error {
	links, err := ip.LinkNames(ctx)
	if err != nil {
		return err
	}
	namespaces, err := ip.NetnsNames(ctx)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}

	type leftovers struct {
		owner      *processIdentity
		ownerPath  string
		namespaces []string
		links      []string
	}
	byIndex := map[int]*leftovers{}
	at := func(s string) *leftovers {
		index, _ := strconv.Atoi(s)
		if byIndex[index] == nil {
			byIndex[index] = &leftovers{}
		}
		return byIndex[index]
	}
	for _, e := range entries {
		if m := ownerFile.FindStringSubmatch(e.Name()); m != nil {
			l := at(m[1])
			l.ownerPath = filepath.Join(dir, e.Name())
			if data, err := os.ReadFile(l.ownerPath); err == nil {
				if id, err := parseProcessIdentity(strings.TrimSpace(string(data))); err == nil {
					l.owner = &id
				}
			}
		}
	}
	for _, ns := range namespaces {
		if m := ourNetnsName.FindStringSubmatch(ns); m != nil {
			l := at(m[1])
			l.namespaces = append(l.namespaces, ns)
		}
	}
	for _, name := range links {
		if m := ourLinkName.FindStringSubmatch(name); m != nil {
			l := at(m[1])
			l.links = append(l.links, name)
		}
	}

	var errs []error
	for index, l := range byIndex {
		if l.owner != nil && l.owner.alive() {
			continue
		}
		log.Info("removing leftovers of a dead owner", "index", index,
			"netns", l.namespaces, "links", l.links)
		for _, ns := range l.namespaces {
			if err := KillNetnsProcesses(ctx, ip, ns); err != nil {
				errs = append(errs, err)
			}
		}
		// Host veths before bridges, then the namespaces.
		for _, name := range l.links {
			if strings.HasSuffix(name, "b") {
				continue
			}
			if _, err := ip.Run(ctx, "link", "del", name); err != nil && !isNotFound(err) {
				errs = append(errs, err)
			}
		}
		for _, name := range l.links {
			if !strings.HasSuffix(name, "b") {
				continue
			}
			if _, err := ip.Run(ctx, "link", "del", name); err != nil && !isNotFound(err) {
				errs = append(errs, err)
			}
		}
		for _, ns := range l.namespaces {
			if _, err := ip.Run(ctx, "netns", "del", ns); err != nil && !isNotFound(err) {
				errs = append(errs, err)
			}
		}
		if l.ownerPath != "" {
			if err := os.Remove(l.ownerPath); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	if err := removeStaleBuildDirs(log); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// KillNetnsProcesses SIGKILLs every process in netns and waits until they
// are gone, so the namespace really disappears when it is deleted.
func KillNetnsProcesses(ctx context.Context, ip Tool, netns string) error {
	pids, err := ip.NetnsPIDs(ctx, netns)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return AwaitProcessesGone(ctx, pids, 10*time.Second)
}

// AwaitProcessesGone polls until none of pids is alive (zombies count as
// gone: they hold no sockets and no namespace).
func AwaitProcessesGone(ctx context.Context, pids []int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for {
		var alive []int
		for _, pid := range pids {
			if ProcessRunning(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("podnet: processes %v still alive after SIGKILL: %w", alive, ctx.Err())
		case <-ticker.C:
		}
	}
}
