package nodeagent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// dialUntil waits for a port of a ready pod to accept connections: a
// container without a probe is ready once its process runs, a moment
// before it listens.
func dialUntil(t *testing.T, network, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port: nothing to wait on
	}
}

// The conformance suite's base manifests need every pod ready, including
// the TLS, gRPC, TCP and coredns backends; these are their specs, trimmed.
func TestConformanceBackendsRun(t *testing.T) {
	client, a := setUp(t, testOptions())
	certPEM, keyPEM := selfSigned(t, "abc.example.com")
	if _, err := client.CoreV1().Secrets("default").Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tls-checks-certificate", Namespace: "default"},
		Data:       map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().ConfigMaps("default").Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "default"},
		Data:       map[string]string{"Corefile": ".:53 {\n  whoami\n}\n"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	downward := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
	}
	secretVolume := corev1.Volume{Name: "secret-volume", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: "tls-checks-certificate",
		Items:      []corev1.KeyToPath{{Key: "tls.crt", Path: "crt"}, {Key: "tls.key", Path: "key"}},
	}}}
	echo := "registry.k8s.io/gateway-api/echo-basic:v1.5.1"
	pods := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "tls-backend"}, Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{secretVolume},
			Containers: []corev1.Container{{Name: "tls-backend", Image: echo,
				VolumeMounts: []corev1.VolumeMount{{Name: "secret-volume", MountPath: "/etc/secret-volume"}},
				Env: append(downward, corev1.EnvVar{Name: "TLS_SERVER_CERT", Value: "/etc/secret-volume/crt"},
					corev1.EnvVar{Name: "TLS_SERVER_PRIVKEY", Value: "/etc/secret-volume/key"})}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "grpc-backend"}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "grpc", Image: echo,
				Env: append(downward, corev1.EnvVar{Name: "GRPC_ECHO_SERVER", Value: "1"})}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "tcp-backend"}, Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{secretVolume},
			Containers: []corev1.Container{{Name: "tcp", Image: echo,
				VolumeMounts: []corev1.VolumeMount{{Name: "secret-volume", MountPath: "/etc/secret-volume"}},
				Env: append(downward, corev1.EnvVar{Name: "TLS_SERVER_CERT", Value: "/etc/secret-volume/crt"},
					corev1.EnvVar{Name: "TLS_SERVER_PRIV_KEY", Value: "/etc/secret-volume/key"},
					corev1.EnvVar{Name: "TCP_ECHO_SERVER", Value: "1"})}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "coredns"}, Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"}}}}},
			Containers: []corev1.Container{{Name: "coredns", Image: "registry.k8s.io/coredns/coredns:v1.12.2",
				Args:         []string{"-conf", "/root/Corefile"},
				VolumeMounts: []corev1.VolumeMount{{Name: "conf", MountPath: "/root"}}}}}},
	}
	ips := map[string]string{}
	for i, p := range pods {
		p.Namespace = "default"
		p.Spec.NodeName = a.Nodes()[i%3].Name
		createPod(t, client, p)
	}
	for _, p := range pods {
		ips[p.Name] = awaitPod(t, client, "default", p.Name, 30*time.Second, "ready", podReady).Status.PodIP
	}

	// HTTPS with the certificate from the secret volume, and the tls block.
	dialUntil(t, "tcp", ips["tls-backend"]+":8443")
	c := &http.Client{Transport: &http.Transport{Proxy: nil,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "abc.example.com"}}}
	resp, err := c.Get("https://" + ips["tls-backend"] + ":8443/tls")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Pod, Namespace, Path string
		TLS                  *struct{ Version, ServerName, CipherSuite string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.TLS == nil {
		t.Fatalf("%v: %s", err, body)
	}
	if e.Pod != "tls-backend" || e.Namespace != "default" || e.TLS.ServerName != "abc.example.com" || e.TLS.Version != "TLSv1.3" {
		t.Errorf("TLS echo %+v tls %+v", e, *e.TLS)
	}

	// TCP echo.
	dialUntil(t, "tcp", ips["tcp-backend"]+":3000")
	conn, err := net.DialTimeout("tcp", ips["tcp-backend"]+":3000", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("ping"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping" {
		t.Errorf("tcp echo: %q %v", got, err)
	}
	conn.Close()

	// DNS placeholder: REFUSED for a query for foo.bar.com.
	query := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		3, 'f', 'o', 'o', 3, 'b', 'a', 'r', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1}
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := net.Dial("udp", ips["coredns"]+":53")
		if err != nil {
			t.Fatal(err)
		}
		u.SetDeadline(time.Now().Add(500 * time.Millisecond))
		u.Write(query)
		answer := make([]byte, 512)
		n, err := u.Read(answer)
		u.Close()
		if err == nil {
			if n != len(query) || answer[0] != 0x12 || answer[1] != 0x34 || answer[2]&0x80 == 0 || answer[3]&0x0F != 5 {
				t.Errorf("DNS answer % x", answer[:n])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no DNS answer: %v", err)
		}
	}

	// gRPC placeholder: HTTP/2 answering UNIMPLEMENTED.
	dialUntil(t, "tcp", ips["grpc-backend"]+":3000")
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Proxy: nil, Protocols: p}}
	resp, err = h2.Post("http://"+ips["grpc-backend"]+":3000/grpc.Echo/Echo", "application/grpc", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("Grpc-Status") != "12" {
		t.Errorf("gRPC placeholder: %s %s grpc-status %q", resp.Proto, resp.Status, resp.Header.Get("Grpc-Status"))
	}
}
