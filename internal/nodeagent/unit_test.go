package nodeagent

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLookupImage(t *testing.T) {
	for ref, pkg := range map[string]string{
		"bulkhead.local/testpod":                              testpodPackage,
		"bulkhead.local/testpod:latest":                       testpodPackage,
		"bulkhead.local/testpod@sha256:abc":                   testpodPackage,
		"registry.k8s.io/gateway-api/echo-basic:v1.5.1":       echobasicPackage,
		"registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3": echobasicPackage,
		"registry.k8s.io/coredns/coredns:v1.12.2":             echobasicPackage,
	} {
		im, err := lookupImage(ref)
		if err != nil || im.Package != pkg {
			t.Errorf("%s: %+v %v", ref, im, err)
		}
	}
	for ref, want := range map[string]string{"nginx": "not known", "localhost:5000/x:1": "not known",
		"Bad/Name": "invalid", " x": "invalid", "": "invalid"} {
		if _, err := lookupImage(ref); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), TestpodImage) {
			t.Errorf("%q: %v, want %q and the supported images", ref, err, want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	tp, _ := lookupImage(TestpodImage)
	dns, _ := lookupImage(CoreDNSImage)
	for _, c := range []struct {
		im            Image
		command, args []string
		want          []string
		err           bool
	}{
		{im: tp, want: []string{"-listen", ":8080", "-control", ":15000"}},
		{im: tp, args: []string{"-listen", ":9000"}, want: []string{"-listen", ":9000"}},
		{im: tp, command: []string{"/testpod", "-listen", ":1"}, want: []string{"-listen", ":1"}},
		{im: tp, command: []string{"nginx"}, err: true},
		{im: dns, args: []string{"-conf", "/x"}, want: []string{"-conf", "/x"}},
		{im: dns, want: []string{"-conf", ""}},
	} {
		got, err := c.im.commandLine(c.command, c.args)
		if (err != nil) != c.err || !slices.Equal(got, c.want) {
			t.Errorf("%s %q %q: %q %v", c.im.Repository, c.command, c.args, got, err)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)-$(B)": "1-two", "$$(A)": "$(A)", "$(C)": "$(C)", "x$": "x$", "$(A": "$(A", "a$b": "a$b",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSleepCommand(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want time.Duration
		ok   bool
	}{
		{[]string{"sleep", "5"}, 5 * time.Second, true},
		{[]string{"/bin/sleep", "1.5"}, 1500 * time.Millisecond, true},
		{[]string{"sh", "-c", "sleep 3"}, 3 * time.Second, true},
		{[]string{"/bin/sh", "-c", "sleep 3 && kill 1"}, 0, false},
		{[]string{"nginx", "-s", "quit"}, 0, false},
	} {
		d, ok := sleepCommand(c.argv)
		if d != c.want || ok != c.ok {
			t.Errorf("%q: %s %v", c.argv, d, ok)
		}
	}
}

func TestRewritePath(t *testing.T) {
	m := []mount{{path: "/etc/secret-volume/sub", dir: "/p/b"}, {path: "/etc/secret-volume", dir: "/p/a"}}
	for in, want := range map[string]string{
		"/etc/secret-volume/crt": "/p/a/crt", "/etc/secret-volume": "/p/a", "/etc/secret-volume/sub/k": "/p/b/k",
		"/etc/secret-volumes": "/etc/secret-volumes", "x": "x",
	} {
		if got := rewritePath(in, m); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := &container{runner: &podRunner{agent: &Agent{opts: Options{BackoffBase: 10 * time.Second, BackoffMax: 5 * time.Minute}}}}
	var got []time.Duration
	for n := 1; n <= 8; n++ {
		got = append(got, c.backoff(n))
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("back-off %v, want %v", got, want)
	}
}

func TestDownwardAPIFields(t *testing.T) {
	r := &podRunner{netReady: true}
	r.net.IP = netip.MustParseAddr("10.213.7.9")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u-1",
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a/b": "c"}},
		Spec: corev1.PodSpec{NodeName: "bulkhead-node-2", ServiceAccountName: "default"},
	}
	for path, want := range map[string]string{
		"metadata.name": "web-1", "metadata.namespace": "shop", "metadata.uid": "u-1",
		"spec.nodeName": "bulkhead-node-2", "spec.serviceAccountName": "default", "status.podIP": "10.213.7.9",
		"metadata.labels['app']": "web", "metadata.annotations['a/b']": "c",
	} {
		if got, err := r.fieldValue(pod, path); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", path, got, err, want)
		}
	}
	if _, err := r.fieldValue(pod, "status.phase"); err == nil {
		t.Error("unsupported field accepted")
	}
}
