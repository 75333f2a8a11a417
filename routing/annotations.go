package routing

import (
	"fmt"
	"slices"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Ingress annotations that tune how the router treats the Ingress's
// backends. Each applies to every route of the Ingress. A bad value is a
// problem (InvalidAnnotation) and that annotation is ignored: the routes
// stay, with the router's defaults.
const (
	annotationPrefix = "bulkhead.io/"
	// AnnotationPrefix is the prefix of every Ingress annotation
	// translation reads, but for LegacyClassAnnotation: a cache may drop
	// an Ingress's other annotations (they change no route).
	AnnotationPrefix = annotationPrefix
	// AnnotationLoadBalancer picks the balancing algorithm:
	// "least-in-flight" (the default: power of two choices on attempts in
	// flight) or "round-robin".
	AnnotationLoadBalancer = annotationPrefix + "load-balancer"
	// AnnotationConnectTimeout bounds connecting to a pod ("500ms", "2s";
	// above 0, at most 1m). Retried on another pod for any method.
	AnnotationConnectTimeout = annotationPrefix + "connect-timeout"
	// AnnotationResponseHeaderTimeout bounds each attempt from its start
	// to the pod's response headers ("0" for none, at most 24h).
	AnnotationResponseHeaderTimeout = annotationPrefix + "response-header-timeout"
	// AnnotationRequestTimeout bounds the whole request, retries and body
	// included ("0" for none, at most 24h).
	AnnotationRequestTimeout = annotationPrefix + "request-timeout"
	// AnnotationRetryNonIdempotent ("true") lets POST and PATCH be
	// retried on another pod after the request may have reached a pod
	// (502/503/504, reset, response header timeout). Only for backends
	// whose writes are idempotent.
	AnnotationRetryNonIdempotent = annotationPrefix + "retry-non-idempotent"
	// AnnotationSlowStart ramps a new pod's share of traffic up over this
	// duration ("30s"; "0" off, at most 1h).
	AnnotationSlowStart = annotationPrefix + "slow-start"
)

// The upstream layer's vocabulary: the filter that carries a route's own
// policy and its keys (package upstream parses them; a test in cmd checks
// that both sides agree), and skipper's algorithm names.
const (
	upstreamPolicyFilter = "bulkheadUpstream"
	backendFilter        = "bulkheadBackend"
	// mirrorFilter is the upstream layer's mirror filter (Gateway API's
	// RequestMirror): bulkheadMirror("<backend key>", <fraction 0..1>).
	mirrorFilter     = "bulkheadMirror"
	algLeastInFlight = "powerOfRandomNChoices"
	algRoundRobin    = "roundRobin"
)

// InvalidAnnotation: a bulkhead.io/ annotation is unknown or has a bad
// value; it is ignored and the router's default applies.
const InvalidAnnotation Reason = "InvalidAnnotation"

// upstreamSettings are an Ingress's balancing algorithm and the
// arguments of its policy filter (none: the router's defaults).
type upstreamSettings struct {
	algorithm  string
	policyArgs []string
}

type durationAnnotation struct {
	name, key string
	min, max  time.Duration
}

var durationAnnotations = []durationAnnotation{
	{AnnotationConnectTimeout, "connect-timeout", time.Nanosecond, time.Minute},
	{AnnotationResponseHeaderTimeout, "response-header-timeout", 0, 24 * time.Hour},
	{AnnotationRequestTimeout, "request-timeout", 0, 24 * time.Hour},
	{AnnotationSlowStart, "slow-start", 0, time.Hour},
}

// parseUpstreamSettings reads an Ingress's bulkhead.io/ annotations.
func parseUpstreamSettings(ing *networkingv1.Ingress, ref types.NamespacedName, problem func(types.NamespacedName, Reason, string, ...any)) upstreamSettings {
	s := upstreamSettings{algorithm: algLeastInFlight}
	ann := ing.Annotations
	for _, name := range sortedKeys(ann) {
		if !strings.HasPrefix(name, annotationPrefix) || isKnownAnnotation(name) {
			continue
		}
		problem(ref, InvalidAnnotation, "unknown annotation %s; ignored", name)
	}
	if v, ok := ann[AnnotationLoadBalancer]; ok {
		switch strings.TrimSpace(v) {
		case "least-in-flight":
		case "round-robin":
			s.algorithm = algRoundRobin
		default:
			problem(ref, InvalidAnnotation, "annotation %s %q: want least-in-flight or round-robin; the default (least-in-flight) applies", AnnotationLoadBalancer, v)
		}
	}
	for _, d := range durationAnnotations {
		v, ok := ann[d.name]
		if !ok {
			continue
		}
		dur, err := parseAnnotationDuration(strings.TrimSpace(v), d.min, d.max)
		if err != nil {
			problem(ref, InvalidAnnotation, "annotation %s %q: %v; the router's default applies", d.name, v, err)
			continue
		}
		s.policyArgs = append(s.policyArgs, d.key+"="+dur.String())
	}
	if v, ok := ann[AnnotationRetryNonIdempotent]; ok {
		switch strings.TrimSpace(v) {
		case "true":
			s.policyArgs = append(s.policyArgs, "retry-non-idempotent=true")
		case "false":
		default:
			problem(ref, InvalidAnnotation, "annotation %s %q: want true or false; not retried (the default)", AnnotationRetryNonIdempotent, v)
		}
	}
	slices.Sort(s.policyArgs)
	return s
}

func parseAnnotationDuration(v string, min, max time.Duration) (time.Duration, error) {
	if v == "0" {
		v = "0s"
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 500ms, 30s or 2m")
	}
	if d < min || d > max {
		if min > 0 {
			return 0, fmt.Errorf("want a duration above 0 and at most %s", max)
		}
		return 0, fmt.Errorf("want 0 (no limit) or a duration of at most %s", max)
	}
	return d, nil
}

func isKnownAnnotation(name string) bool {
	switch name {
	case AnnotationLoadBalancer, AnnotationRetryNonIdempotent, AnnotationSSLRedirect:
		return true
	}
	for _, d := range durationAnnotations {
		if d.name == name {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
