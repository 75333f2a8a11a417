package controlplane

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestOutageLifecycle proves what the outage tests rely on: a client made
// before the API server is killed, frozen or restarted works again after it,
// with its data intact, and the kubeconfig works for outside tools.
func TestOutageLifecycle(t *testing.T) {
	cp := ForTest(t)
	ctx := context.Background()
	if _, _, err := cp.ControllerPIDs(); err == nil {
		t.Fatal("a control plane started without Options.Controllers runs controllers")
	}

	fromKubeconfig, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig())
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	client := kubernetes.NewForConfigOrDie(fromKubeconfig)
	mustCreateConfigMap(t, client, "before")

	if err := cp.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	if cp.APIServerRunning() {
		t.Fatal("kube-apiserver still running after KillAPIServer")
	}
	if _, err := shortGet(client, "before"); err == nil {
		t.Fatal("a request succeeded while kube-apiserver was dead")
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := shortGet(client, "before"); err != nil {
		t.Fatalf("data or client lost across a kill and restart: %v", err)
	}

	if err := cp.FreezeAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := shortGet(client, "before"); err == nil {
		t.Fatal("a request succeeded while kube-apiserver was frozen")
	}
	if err := cp.ThawAPIServer(); err != nil {
		t.Fatal(err)
	}
	mustCreateConfigMap(t, client, "after-thaw")

	if err := cp.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"before", "after-thaw"} {
		if _, err := shortGet(client, name); err != nil {
			t.Fatalf("after restart, %s: %v", name, err)
		}
	}
}

func mustCreateConfigMap(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": "v"}}
	if _, err := client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create configmap %s: %v", name, err)
	}
}

func shortGet(client kubernetes.Interface, name string) (*corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cm, err := client.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
	if err == nil && cm.Data["k"] != "v" {
		return nil, fmt.Errorf("configmap %s has data %v", name, cm.Data)
	}
	return cm, err
}
