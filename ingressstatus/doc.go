// Package ingressstatus writes the publish addresses (-publish-address, for
// example the ALB's DNS name) into status.loadBalancer.ingress of every
// Ingress bulkhead serves, and removes them from Ingresses it no longer
// serves.
//
// Every node runs a bulkhead, but only one should write: replicas elect a
// leader on a coordination.k8s.io Lease (client-go's leaderelection), and
// only the leader reconciles. Status is cosmetic for routing: losing the
// lease (for example while the API server is down) stops the writes and
// nothing else.
//
// Removal is careful: an Ingress that is not ours loses its status only if
// that status is exactly our addresses, so an Ingress moved to another
// controller keeps what that controller wrote.
//
// Input is the table the data client publishes (package routing's
// Table.Served) and the Ingresses in the data client's informer cache; this
// package never lists from the API server itself.
package ingressstatus
