package dataclient

import "time"

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

// HoldStatus is an update held back by the deletion guard.
type HoldStatus struct {
	Since            time.Time `json:"since"`
	ReleaseAt        time.Time `json:"releaseAt"`
	RemovedRoutes    int       `json:"removedRoutes"`
	RoutesBefore     int       `json:"routesBefore"`
	RemovedEndpoints int       `json:"removedEndpoints"`
	EndpointsBefore  int       `json:"endpointsBefore"`
	Summary          string    `json:"summary"`
	Confirm          string    `json:"confirm"`
}

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
	if h := c.hold; h != nil {
		st.Hold = &HoldStatus{
			Since: h.since, ReleaseAt: h.since.Add(c.o.Guard.HoldPeriod),
			RemovedRoutes: h.removal.routes, RoutesBefore: h.removal.routesBefore,
			RemovedEndpoints: h.removal.endpoints, EndpointsBefore: h.removal.endpointsBefore,
			Summary: "would remove " + h.removal.String(),
			Confirm: "POST /guard/confirm on the admin endpoint applies it now",
		}
	}
	return st
}
