package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile checks what can be checked without a container engine:
// base images pinned to exact versions, a non-root runtime without a
// shell, and that the build stage's own command, run here with its
// environment, yields a static binary (no ELF interpreter, no shared
// libraries), which is what the distroless static image can run.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	var froms []string
	env := []string{}
	var build string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "FROM":
			froms = append(froms, f[1])
		case "ENV":
			env = append(env, f[1:]...)
		case "RUN":
			if strings.HasPrefix(strings.Join(f[1:], " "), "go build") {
				build = strings.Join(f[1:], " ")
			}
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, FROM lines: %v", froms)
	}
	pinned := regexp.MustCompile(`:[0-9]+\.[0-9]+\.[0-9]+|@sha256:|static-debian[0-9]+:nonroot$`)
	for _, f := range froms {
		if !pinned.MatchString(f) || strings.HasSuffix(f, ":latest") {
			t.Errorf("base image %s is not pinned to a version", f)
		}
	}
	if runtime := froms[len(froms)-1]; !strings.Contains(runtime, "distroless/static") && runtime != "scratch" {
		t.Errorf("runtime image %s: want distroless static or scratch", runtime)
	}
	if !regexp.MustCompile(`(?m)^USER (65532|nonroot)`).MatchString(text) {
		t.Error("the runtime does not run as a non-root user")
	}
	if build == "" {
		t.Fatal("no RUN go build line")
	}

	out := filepath.Join(t.TempDir(), "bulkhead")
	args := strings.Fields(strings.ReplaceAll(build, `"`, ""))
	for i, a := range args {
		if a == "-o" {
			args[i+1] = out
		}
	}
	// "-ldflags -s -w" lost its quotes above: put them back together.
	for i := 0; i < len(args); i++ {
		if args[i] == "-ldflags" && i+2 < len(args) {
			args = append(args[:i+1], append([]string{args[i+1] + " " + args[i+2]}, args[i+3:]...)...)
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, b)
	}
	bin, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader: not static")
		}
	}
	if libs, _ := bin.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
}
