package toolbuild

import (
	"context"
	"io"
	"path/filepath"
)

// Tools are the chaos and load programs of hack/tools.
type Tools struct {
	Toxiproxy string // toxiproxy's server
	Vegeta    string
}

// EnsureTools builds (once) and returns the programs of hack/tools.
func EnsureTools(ctx context.Context, progress io.Writer) (Tools, error) {
	dir, err := Ensure(ctx, Spec{
		Name:      "tools",
		ModuleDir: filepath.Join("hack", "tools"),
		Programs: map[string]string{
			"toxiproxy-server": "github.com/Shopify/toxiproxy/v2/cmd/server",
			"vegeta":           "github.com/tsenart/vegeta/v12",
		},
		LDFlags: "-s -w",
		What:    "toxiproxy and vegeta",
	}, progress)
	if err != nil {
		return Tools{}, err
	}
	return Tools{Toxiproxy: filepath.Join(dir, "toxiproxy-server"), Vegeta: filepath.Join(dir, "vegeta")}, nil
}
