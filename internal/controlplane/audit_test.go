package controlplane

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAuditLogRecordsListsAndWatches(t *testing.T) {
	t.Parallel()
	cp := ForTestWith(t, Options{Audit: true})
	client := cp.Client()
	ctx := context.Background()
	if _, err := client.CoreV1().Services("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := client.NetworkingV1().Ingresses("").Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		events, _, err := cp.AuditEvents(0)
		var list, watch bool
		for _, e := range events {
			list = list || (e.Verb == "list" && e.Resource == "services" && e.FullList())
			watch = watch || (e.Verb == "watch" && e.Resource == "ingresses" && !e.FullList())
		}
		if list && watch {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log: list seen %v, watch seen %v (%d events, err %v)", list, watch, len(events), err)
		}
		time.Sleep(50 * time.Millisecond) // the server writes the log on its own
	}
}
