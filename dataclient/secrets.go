package dataclient

import (
	"context"
	"fmt"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// kindSecret names the Secrets in metrics and staleness.
const kindSecret = "Secret"

// newSecretInformer watches the kubernetes.io/tls Secrets: the
// certificates of Ingress spec.tls, of HTTPS Gateway listeners'
// certificateRefs and the default certificate. Listed with a field
// selector, so no other Secret is ever read, and kept lean (leanSecret).
// It runs whether or not the Gateway API is served. Its factory is its
// own: the field selector must not apply to anything else.
func newSecretInformer(w *watcher) (informers.SharedInformerFactory, cache.SharedIndexInformer) {
	f := informers.NewSharedInformerFactoryWithOptions(w.kube, 0, informers.WithTransform(lean),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS)).String()
		}))
	return f, f.Core().V1().Secrets().Informer()
}

// watchSecrets hooks the Secret informer up as newWatcher does the others,
// with one difference: a list or watch refused as Forbidden (the role
// lacks the Secrets rule) is not a lost API server, and the informer then
// counts as synced, empty. A missing RBAC rule costs TLS (the Ingresses'
// certificates are "not found" on /problems; client-go logs the refusal),
// not the router's readiness, nor, with -apiserver-reconnect=relist, a
// relist of everything at every retry. Once the rule is there the next
// list fills the cache and the table follows.
func (w *watcher) watchSecrets() cache.InformerSynced {
	var forbidden atomic.Bool
	if err := w.secrets.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			forbidden.Store(true)
			return
		}
		w.onWatchError(err)
	}); err != nil {
		panic(fmt.Sprintf("setting the %s watch error handler before start: %v", kindSecret, err))
	}
	reg, err := w.secrets.AddEventHandler(w.handler(kindSecret))
	if err != nil {
		panic(fmt.Sprintf("adding %s handler before start: %v", kindSecret, err))
	}
	return func() bool { return reg.HasSynced() || forbidden.Load() }
}

// leanSecret keeps what translation reads of a TLS Secret: its identity,
// type, and the key pair.
func leanSecret(s *corev1.Secret) *corev1.Secret {
	out := &corev1.Secret{TypeMeta: s.TypeMeta, ObjectMeta: leanMeta(s.ObjectMeta), Type: s.Type}
	if s.Type == corev1.SecretTypeTLS {
		out.Data = map[string][]byte{}
		for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
			if v, ok := s.Data[k]; ok {
				out.Data[k] = v
			}
		}
	}
	return out
}

// secretsReferenced reports whether one of the changed Secrets may be
// read by the next translation: the default certificate, a Secret named
// in spec.tls of a served Ingress (of served, the table's Served list),
// or in a certificateRef of any cached Gateway (ours or not: Gateways are
// few, and a Gateway becoming ours rebuilds anyway). A change of any
// other TLS Secret (a cluster has many: cert-manager's, webhooks') costs a
// cache update and no rebuild.
func (w *watcher) secretsReferenced(secrets map[types.NamespacedName]bool, served []types.NamespacedName, defaultCert types.NamespacedName) bool {
	if secrets[defaultCert] {
		return true
	}
	namespaces := map[string]bool{}
	for n := range secrets {
		namespaces[n.Namespace] = true
	}
	for _, n := range served {
		if !namespaces[n.Namespace] {
			continue
		}
		obj, ok, _ := w.ingresses.GetIndexer().GetByKey(n.String())
		if !ok {
			continue
		}
		for _, t := range obj.(*networkingv1.Ingress).Spec.TLS {
			if secrets[types.NamespacedName{Namespace: n.Namespace, Name: t.SecretName}] {
				return true
			}
		}
	}
	w.mu.Lock()
	g := w.gw
	w.mu.Unlock()
	if g == nil {
		return false
	}
	for _, obj := range g.gateways.GetStore().List() {
		gw := obj.(*gatewayv1.Gateway)
		for _, l := range gw.Spec.Listeners {
			if l.TLS == nil {
				continue
			}
			for _, ref := range l.TLS.CertificateRefs {
				ns := gw.Namespace
				if ref.Namespace != nil {
					ns = string(*ref.Namespace)
				}
				if secrets[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}] {
					return true
				}
			}
		}
	}
	return false
}
