package dataclient

import (
	"fmt"
	"time"

	"github.com/bulkhead-router/bulkhead/routing"
)

// GuardOptions configure the deletion guard.
type GuardOptions struct {
	// MaxRemovalShare: an update removing more than this share of all
	// routes, or of all endpoints, is held. Zero: 0.5. 1 disables the guard.
	MaxRemovalShare float64
	// HoldPeriod is how long the same held state must be observed before it
	// is applied. Zero: 2 minutes.
	HoldPeriod time.Duration
}

func (o GuardOptions) withDefaults() GuardOptions {
	if o.MaxRemovalShare == 0 {
		o.MaxRemovalShare = 0.5
	}
	if o.HoldPeriod == 0 {
		o.HoldPeriod = 2 * time.Minute
	}
	return o
}

// removal measures what replacing one table with another takes away.
type removal struct {
	routes, routesBefore       int
	endpoints, endpointsBefore int
	ingresses                  int // distinct Ingresses losing routes
	services                   int // distinct Services losing endpoints
}

func (r removal) routeShare() float64 {
	if r.routesBefore == 0 {
		return 0
	}
	return float64(r.routes) / float64(r.routesBefore)
}

func (r removal) endpointShare() float64 {
	if r.endpointsBefore == 0 {
		return 0
	}
	return float64(r.endpoints) / float64(r.endpointsBefore)
}

func (r removal) String() string {
	return fmt.Sprintf("%d of %d routes (%d Ingresses) and %d of %d endpoints (%d Services)",
		r.routes, r.routesBefore, r.ingresses, r.endpoints, r.endpointsBefore, r.services)
}

// measureRemoval compares two tables. Endpoints are counted once per
// Service port and address, however many routes share them.
func measureRemoval(before, after routing.Table) removal {
	var r removal
	afterRoutes := make(map[string]bool, len(after.Routes))
	for _, rt := range after.Routes {
		afterRoutes[rt.Eskip.Id] = true
	}
	ingresses := map[string]bool{}
	for _, rt := range before.Routes {
		r.routesBefore++
		if !afterRoutes[rt.Eskip.Id] {
			r.routes++
			ingresses[rt.Ingress.String()] = true
		}
	}
	r.ingresses = len(ingresses)

	beforeEps, afterEps := endpointSet(before), endpointSet(after)
	services := map[string]bool{}
	for ep, svc := range beforeEps {
		r.endpointsBefore++
		if _, ok := afterEps[ep]; !ok {
			r.endpoints++
			services[svc] = true
		}
	}
	r.services = len(services)
	return r
}

// endpointSet maps "namespace/service:port address" to "namespace/service".
func endpointSet(t routing.Table) map[string]string {
	out := map[string]string{}
	for _, rt := range t.Routes {
		svc := rt.Ingress.Namespace + "/" + rt.Service
		for _, ep := range rt.Endpoints {
			out[svc+":"+rt.Port+" "+ep.Address] = svc
		}
	}
	return out
}

// massRemoval reports whether an update removes too much at once to be
// trusted without confirmation. Removing one Ingress's routes or one
// Service's endpoints is never mass removal, whatever the share: deleting
// the only Ingress, or scaling the only Service to zero, is a normal act.
func (o GuardOptions) massRemoval(r removal) bool {
	if o.MaxRemovalShare >= 1 {
		return false
	}
	return (r.ingresses > 1 && r.routeShare() > o.MaxRemovalShare) ||
		(r.services > 1 && r.endpointShare() > o.MaxRemovalShare)
}
