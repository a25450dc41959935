package integration

// The import rules of /work/shared/DESIGN.md, enforced with `go list
// -deps` on the non-test dependencies of each package.

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// deps returns the transitive non-test dependencies of pkg (pkg itself
// included), split into standard-library and other packages.
func deps(t *testing.T, pkg string) (std, other []string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	// -e: a package that does not compile still lists its imports.
	cmd := exec.Command(goBin, "list", "-e", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.Bytes())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		path, isStd, _ := strings.Cut(sc.Text(), " ")
		if isStd == "true" {
			std = append(std, path)
		} else {
			other = append(other, path)
		}
	}
	return std, other
}

func TestImportRules(t *testing.T) {
	rules := []struct {
		pkg string
		// allowed reports whether a non-standard dependency is permitted.
		allowed func(dep string) bool
		rule    string
	}{
		{"utcp/seg", func(d string) bool { return d == "utcp/seg" },
			"seg imports the standard library only"},
		{"utcp/timers", func(d string) bool { return d == "utcp/timers" },
			"timers imports the standard library only"},
		{"utcp/tun", func(d string) bool {
			return d == "utcp/tun" || strings.HasPrefix(d, "utcp/tun/") || strings.HasPrefix(d, "golang.org/x/sys/")
		}, "tun imports nothing of ours beyond its subpackages; third party only x/sys"},
		{"utcp/stack", func(d string) bool {
			return d == "utcp/stack" || d == "utcp/seg" || d == "utcp/timers"
		}, "stack imports only seg and timers (never gVisor or x/sys)"},
		{"utcp/cmd/utcp", func(d string) bool { return !strings.HasPrefix(d, "gvisor.dev/") },
			"cmd/utcp never imports gVisor"},
	}
	for _, r := range rules {
		t.Run(strings.TrimPrefix(r.pkg, "utcp/"), func(t *testing.T) {
			_, other := deps(t, r.pkg)
			if len(other) == 0 {
				t.Fatalf("go list found no non-standard package, not even %s itself", r.pkg)
			}
			for _, d := range other {
				if !r.allowed(d) {
					t.Errorf("%s depends on %s: %s", r.pkg, d, r.rule)
				}
			}
		})
	}
	// The rule checker itself: the gVisor bridge in this package must be
	// seen as a gVisor dependency, or the checks above prove nothing.
	_, other := deps(t, "utcp/integration")
	found := false
	for _, d := range other {
		if strings.HasPrefix(d, "gvisor.dev/gvisor/") {
			found = true
		}
	}
	if !found {
		t.Fatal("go list -deps utcp/integration shows no gvisor.dev package; the dependency listing is broken")
	}
}
