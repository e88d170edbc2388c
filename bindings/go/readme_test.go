package rodiff_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// readmeProgram returns the Go program of the README's Go section (the ```go block after the
// comment that names this file).
func readmeProgram(t *testing.T) string {
	text, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(text), "bindings/go/readme_test.go")
	if !ok {
		t.Fatal("README.md: no Go program marked for readme_test.go")
	}
	_, rest, ok = strings.Cut(rest, "```go\n")
	program, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("README.md: no ```go block after the marker")
	}
	return program
}

// TestREADMEExample builds the README's program as a module of its own that uses this one, as a
// user would, and runs it against the fixture container.
func TestREADMEExample(t *testing.T) {
	program := readmeProgram(t)
	if n := strings.Count(strings.TrimSpace(program[strings.Index(program, "func main"):]), "\n"); n > 16 {
		t.Errorf("the README's main has %d lines", n)
	}
	name := fixture(t)
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gomod := "module readme\n\ngo 1.19\n\nrequire rodiff.dev/rodiff v0.0.0\n\nreplace rodiff.dev/rodiff => " + here + "\n"
	for file, text := range map[string]string{"go.mod": gomod, "main.go": program} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", "readme", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=off", "GOPROXY=off") // GOFLAGS (-tags) as the test's
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the README's program: %v\n%s", err, out)
	}
	var stderr bytes.Buffer
	run := exec.Command(filepath.Join(dir, "readme"), name)
	run.Stderr = &stderr
	out, err := run.Output()
	if err != nil {
		t.Fatalf("the README's program: %v: %s", err, stderr.String())
	}
	for _, line := range []string{"A file 0644 /data/a\n", "A dir 0755 /data/sub\n", "C file 0644 /srv/data/a.txt\n", "A file 4750 /data/sub/big\n"} {
		if !bytes.Contains(out, []byte(line)) {
			t.Errorf("the README's program printed no %q:\n%s", line, out)
		}
	}
	// And it fails as it should on an unknown container.
	run = exec.Command(filepath.Join(dir, "readme"), "no-such-container-rodiff-go")
	if out, err := run.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("no-such-container-rodiff-go")) {
		t.Errorf("unknown container: %v: %s", err, out)
	}
}
