package podnet

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// MissingPreconditionError says what this host lacks to run pods.
type MissingPreconditionError struct {
	Missing []string
}

func (e *MissingPreconditionError) Error() string {
	return "cannot run pods on this host, missing: " + strings.Join(e.Missing, "; ")
}

// CheckPreconditions reports what this host or process lacks to run pods:
// root, the ip command and network namespaces; with needGo also the go
// command, which builds the pod programs. The error is a
// *MissingPreconditionError.
func CheckPreconditions(needGo bool) error {
	var missing []string
	if uid := os.Geteuid(); uid != 0 {
		missing = append(missing, fmt.Sprintf(
			"root (network namespaces, veths and bridges need CAP_NET_ADMIN and CAP_SYS_ADMIN; running as uid %d)", uid))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "the ip command from iproute2 (not in PATH)")
	}
	if needGo {
		if _, err := exec.LookPath("go"); err != nil {
			missing = append(missing, "the go command to build the pod programs (not in PATH)")
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		missing = append(missing, "network namespace support (/proc/self/ns/net)")
	}
	if len(missing) > 0 {
		return &MissingPreconditionError{Missing: missing}
	}
	return nil
}

// NewTool returns the ip command found in PATH (or plain "ip").
func NewTool() Tool {
	if path, err := exec.LookPath("ip"); err == nil {
		return Tool{path: path}
	}
	return Tool{path: "ip"}
}

// Path is the ip binary, for `ip netns exec`.
func (t Tool) Path() string { return t.path }

// Index is the third octet of the Host's /24; it appears in every name the
// Host creates.
func (n *Host) Index() int { return n.index }

// Subnet is the Host's /24.
func (n *Host) Subnet() netip.Prefix { return n.subnet }

// Gateway is the root namespace's address on the bridge (.1).
func (n *Host) Gateway() netip.Addr { return n.gateway }

// Bridge is the name of the Host's bridge.
func (n *Host) Bridge() string { return n.bridge }

// OwnerRecord is the path of the Host's ownership record.
func (n *Host) OwnerRecord() string { return n.owner }

// Tool is the ip command the Host runs.
func (n *Host) Tool() Tool { return n.ip }
