// Package record holds what happened to one client request on its way
// through the router: the route that matched, the backend it named, every
// attempt toward a pod with its endpoint, breaker state, timing and
// outcome, and why no further attempt was made. The serving path fills
// it in as it goes (the upstream layer records the route, the backend and
// the attempts); the access log and the tracer read it when the request
// is done.
//
// A Request exists only when something will read it: the access log or
// the tracer puts one into the request's context (Ensure) before the
// request is served. Without one, the serving path records nothing and
// pays one context lookup per request. A Request belongs to its request's
// goroutines in turn (the handler, then the round tripper, then the
// handler again once the answer is written), never to two at once, so it
// has no lock.
//
// Nothing of a Request is sent to the client or a pod, except what an
// AttemptTracer chooses to add to an attempt's headers (the W3C
// traceparent of the attempt's span).
package record
