package controlplane

import (
	"bufio"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// auditPolicy logs one line (when a request arrives) for every list and
// watch of the kinds bulkhead reads, and nothing else: enough to count a
// fleet's relists and resumes without slowing the server down.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["ResponseStarted", "ResponseComplete", "Panic"]
rules:
- level: Metadata
  verbs: ["list", "watch"]
  resources:
  - group: "networking.k8s.io"
    resources: ["ingresses", "ingressclasses"]
  - group: ""
    resources: ["services"]
  - group: "discovery.k8s.io"
    resources: ["endpointslices"]
- level: None
`

// AuditLogPath is where kube-apiserver writes its audit log (Options.Audit).
func (cp *ControlPlane) AuditLogPath() string { return filepath.Join(cp.dir, "logs", "audit.log") }

func (cp *ControlPlane) auditArgs() ([]string, error) {
	policy := filepath.Join(cp.dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + cp.AuditLogPath(),
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
	}, nil
}

// AuditEvent is one list or watch request as the audit log records it.
type AuditEvent struct {
	Verb      string    // list or watch
	Resource  string    // ingresses, services, endpointslices, ingressclasses
	UserAgent string    //
	Received  time.Time // when the request arrived
	Query     url.Values
}

// FullList reports whether the request transfers every object: a LIST, or
// a watch that starts with the current state (a streaming watch-list with
// sendInitialEvents=true, or a watch without a resourceVersion).
func (e AuditEvent) FullList() bool {
	if e.Verb == "list" {
		return true
	}
	rv := e.Query.Get("resourceVersion")
	return e.Query.Get("sendInitialEvents") == "true" || rv == "" || rv == "0"
}

// StreamingList reports whether the request is a watch-list (the objects
// streamed one by one from the watch cache rather than in one response).
func (e AuditEvent) StreamingList() bool {
	return e.Verb == "watch" && e.Query.Get("sendInitialEvents") == "true"
}

// AuditEvents reads the audit log (Options.Audit) from byte offset from,
// and returns its events and the offset after the last complete line.
func (cp *ControlPlane) AuditEvents(from int64) ([]AuditEvent, int64, error) {
	f, err := os.Open(cp.AuditLogPath())
	if err != nil {
		return nil, from, err
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return nil, from, err
	}
	var out []AuditEvent
	r := bufio.NewReaderSize(f, 1<<16)
	offset := from
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // a partial last line is read next time
		}
		offset += int64(len(line))
		var raw struct {
			Verb       string `json:"verb"`
			RequestURI string `json:"requestURI"`
			UserAgent  string `json:"userAgent"`
			ObjectRef  struct {
				Resource string `json:"resource"`
			} `json:"objectRef"`
			Received time.Time `json:"requestReceivedTimestamp"`
		}
		if json.Unmarshal([]byte(line), &raw) != nil {
			continue
		}
		ev := AuditEvent{Verb: raw.Verb, Resource: raw.ObjectRef.Resource, UserAgent: raw.UserAgent, Received: raw.Received}
		if i := strings.IndexByte(raw.RequestURI, '?'); i >= 0 {
			ev.Query, _ = url.ParseQuery(raw.RequestURI[i+1:])
		} else {
			ev.Query = url.Values{}
		}
		out = append(out, ev)
	}
	return out, offset, nil
}

// AuditLogSize is the audit log's current length, an offset for AuditEvents.
func (cp *ControlPlane) AuditLogSize() int64 {
	st, err := os.Stat(cp.AuditLogPath())
	if err != nil {
		return 0
	}
	return st.Size()
}
