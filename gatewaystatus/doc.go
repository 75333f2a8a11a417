// Package gatewaystatus writes the Gateway API status that the translation
// computes (package routing's Table.GatewayClasses, Table.Gateways,
// Table.HTTPRoutes, Table.GRPCRoutes) to the objects: GatewayClass
// conditions, Gateway addresses, conditions and listeners, and our entries
// in HTTPRoute and GRPCRoute status.parents.
//
// Data flow: the data client translates live objects and hands the status
// to SetStatus (never blocking; the latest replaces an unread older one);
// the objects to write to come from the data client's informer caches
// (Options.GatewayClasses, Gateways, HTTPRoutes, GRPCRoutes). This package never lists
// from the API server: it reads an object only after a write conflict. It
// imports routing for the status types and nothing of the data client. A
// table loaded from disk carries no status (Table's status fields are not
// stored), the caller does not call SetStatus for it, and nothing is written
// until a translation of live objects arrives.
//
// Every node runs a bulkhead, but only one should write: replicas elect a
// leader on a coordination.k8s.io Lease of their own (Options.LeaseName, not
// the Ingress status writer's), and only the leader writes. Unlike the
// Ingress status writer it always runs: a GatewayClass must be Accepted
// whether or not there are addresses to publish. Status is cosmetic for
// routing: losing the lease (for example while the API server is down)
// stops the writes and nothing else.
//
// A status is written (UpdateStatus, first over the cached copy, after a
// conflict over a fresh GET, retry.RetryOnConflict) only when it differs
// semantically from what the object has, so an unchanged translation costs
// no API call. The translation has no clock: its conditions come without
// lastTransitionTime. A condition keeps the time it has when its status
// did not change, and gets now otherwise (meta.SetStatusCondition's rule);
// observedGeneration is the translation's. The spec's rules for shared
// status are kept:
//
//   - Conditions of a domain-qualified type ("example.com/Audited") belong
//     to someone else and stay as and where they are; a Gateway API type
//     (unqualified) that the translation no longer reports is removed.
//   - A status whose conditions report a newer generation than the
//     translation saw (a replica with a fresher cache wrote it) is left
//     alone; the translation of that generation will come.
//   - In HTTPRoute and GRPCRoute status.parents (the same rules for both
//     kinds, which are told apart: an HTTPRoute and a GRPCRoute may share a
//     name) only the entries whose controllerName is
//     ours (Options.ControllerName) are ours: each is replaced in place by
//     the translation's entry for the same parentRef, new ones are
//     appended, and ours for a parent the route no longer attaches to
//     through one of our Gateways are removed, also from routes the
//     translation no longer lists at all. Other controllers' entries are
//     never changed.
//
// Only the objects the translation names are written: GatewayClasses of our
// controllerName, Gateways of those classes (a Gateway whose class stops
// being ours keeps what we wrote, for the new controller to overwrite).
// Objects the translation names that the cache no longer has are skipped.
//
// A failed write is counted (MetricWrites, result "error") and tried again
// after Options.RetryInterval; it is logged at Warn when an object's writes
// start failing and at Info when they succeed again, not on every try.
package gatewaystatus
