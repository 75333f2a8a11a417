package dataclient

import (
	"fmt"
	"time"
)

// Status is what the admin endpoint's /status shows of the route source.
type Status struct {
	APIServer APIServerStatus `json:"apiServer"`
	Table     TableStatus     `json:"table"`
	// Hold is the update the deletion guard holds back, if any.
	Hold *HoldStatus `json:"hold,omitempty"`
}

// APIServerStatus is the connection to the API server.
type APIServerStatus struct {
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	// LastSync is the last successful (re)sync of the informers.
	LastSync  time.Time `json:"lastSync,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// TableStatus is the table being served.
type TableStatus struct {
	Loaded    bool      `json:"loaded"`
	Source    string    `json:"source,omitempty"` // apiserver or snapshot
	Version   uint64    `json:"version,omitempty"`
	Routes    int       `json:"routes"`
	AppliedAt time.Time `json:"appliedAt,omitzero"`
	// SavedAt and AgeSeconds describe the stored table, when serving one.
	SavedAt    time.Time `json:"savedAt,omitzero"`
	AgeSeconds float64   `json:"ageSeconds,omitempty"`
}

// HoldStatus is what the deletion guard holds back.
type HoldStatus struct {
	// Since is when the oldest hold began, ReleaseAt when the last one
	// ends (each held object is applied on its own clock, see Objects).
	Since      time.Time `json:"since"`
	ReleaseAt  time.Time `json:"releaseAt"`
	Ingresses  int       `json:"ingresses"`
	HTTPRoutes int       `json:"httpRoutes"`
	GRPCRoutes int       `json:"grpcRoutes,omitempty"`
	Services   int       `json:"services"`
	// Objects are the held objects, at most maxHoldObjectsShown of them.
	Objects []HeldObject `json:"objects"`
	Summary string       `json:"summary"`
	Confirm string       `json:"confirm"`
}

// HeldObject is one removal the guard holds: an Ingress still served with
// its last spec, an HTTPRoute with its last routes, or a Service whose
// last endpoints are still used.
type HeldObject struct {
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Since     time.Time `json:"since"`
	ReleaseAt time.Time `json:"releaseAt"`
	// Announced: the watch reported the deletion (held as part of a burst);
	// false: a relist or restart found it missing.
	Announced bool `json:"announced"`
	// Routes the hold keeps serving (an Ingress's or HTTPRoute's own; a
	// Service's users).
	Routes int `json:"routes"`
}

const maxHoldObjectsShown = 100

// Status reports the route source's state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{APIServer: APIServerStatus{
		Connected: c.api.connected, Since: c.api.since, LastSync: c.api.lastSync, LastError: c.api.lastError,
	}}
	if cur := c.current; cur != nil {
		st.Table = TableStatus{Loaded: true, Source: cur.source, Version: cur.version, Routes: len(cur.table.Routes), AppliedAt: cur.appliedAt}
		if cur.source == SourceSnapshot {
			st.Table.SavedAt = cur.savedAt
			st.Table.AgeSeconds = time.Since(cur.savedAt).Seconds()
		}
	}
	if len(c.holdView) > 0 {
		h := &HoldStatus{Confirm: "POST /guard/confirm on the admin endpoint applies every held removal now"}
		for i, o := range c.holdView {
			if i == 0 || o.Since.Before(h.Since) {
				h.Since = o.Since
			}
			if o.ReleaseAt.After(h.ReleaseAt) {
				h.ReleaseAt = o.ReleaseAt
			}
			switch o.Kind {
			case kindIngress:
				h.Ingresses++
			case kindHTTPRoute:
				h.HTTPRoutes++
			case kindGRPCRoute:
				h.GRPCRoutes++
			case kindService:
				h.Services++
			}
		}
		h.Objects = c.holdView[:min(len(c.holdView), maxHoldObjectsShown)]
		routes := fmt.Sprintf("%d HTTPRoutes", h.HTTPRoutes)
		if h.GRPCRoutes > 0 {
			routes += fmt.Sprintf(", %d GRPCRoutes", h.GRPCRoutes)
		}
		h.Summary = fmt.Sprintf("holding the removal of %d Ingresses, %s and the endpoints of %d Services; everything else is applied",
			h.Ingresses, routes, h.Services)
		st.Hold = h
	}
	return st
}
