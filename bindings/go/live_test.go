package rodiff_test

// Tests against a real dockerd: run them through the sandbox (make test-go), which sets
// DOCKER_HOST; without it they are skipped (they fail under CI=true). The CLI they compare with
// is $RODIFF_BIN, or target/release/rodiff.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"rodiff.dev/rodiff"
)

const image = "rodiff-test/busybox:latest"

// The fixture container's script: every file type, a name that is not UTF-8, a deletion, a
// changed file, modes and owners, several directories (several batches when streamed).
const fixtureScript = `set -e
mkdir -p /data/sub /data/other
echo hello > /data/a
printf 'x%.0s' $(seq 1000) > /data/sub/big
chmod 4750 /data/sub/big
chown 1234:5678 /data/a
ln -s /data/a /data/link
mkfifo /data/fifo
mknod /data/null c 1 3
touch "$(printf '/data/caf\351')"
for i in $(seq 50); do : > /data/other/$i; done
echo changed >> /srv/data/a.txt
rm -f /bin/vi
touch /ready
trap 'exit 0' TERM
while :; do sleep 1 & wait $!; done`

var (
	fixtureOnce sync.Once
	fixtureName string
	fixtureErr  error
	bigOnce     sync.Once
	bigName     string
	bigErr      error
)

func dockerHost(t testing.TB) string {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" && os.Getenv("CI") == "true" {
		t.Fatal("DOCKER_HOST is not set (CI: a missing sandbox fails the test)")
	}
	if host == "" {
		t.Skip("DOCKER_HOST is not set: run through make test-go (the sandbox)")
	}
	return host
}

func docker(args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("docker", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// startContainer runs script in a new busybox container and waits until it made /ready.
func startContainer(name, script string) error {
	if _, err := docker("run", "-d", "--name", name, "--network", "none", image, "sh", "-c", script); err != nil {
		return err
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := docker("exec", name, "test", "-e", "/ready"); err == nil {
			return nil
		}
	}
	logs, _ := docker("logs", name)
	return fmt.Errorf("container %s did not get ready: %s", name, logs)
}

// fixture is a running container with a small, varied diff.
func fixture(t *testing.T) string {
	dockerHost(t)
	fixtureOnce.Do(func() {
		fixtureName = fmt.Sprintf("rodiff-go-%d", os.Getpid())
		fixtureErr = startContainer(fixtureName, fixtureScript)
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureName
}

// big is a running container that wrote 20,000 files (40 directories of 500).
func big(t *testing.T) string {
	dockerHost(t)
	bigOnce.Do(func() {
		bigName = fmt.Sprintf("rodiff-go-big-%d", os.Getpid())
		bigErr = startContainer(bigName, `mkdir /w && for d in $(seq 40); do mkdir /w/$d; `+
			`for f in $(seq 500); do : > /w/$d/$f; done; done; touch /ready; exec sleep 3600`)
	})
	if bigErr != nil {
		t.Fatal(bigErr)
	}
	return bigName
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, name := range []string{fixtureName, bigName} {
		if name != "" {
			docker("rm", "-f", name)
		}
	}
	os.Exit(code)
}

func newClient(t testing.TB) *rodiff.Client {
	t.Helper()
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: dockerHost(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func cli(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := os.Getenv("RODIFF_BIN")
	if bin == "" {
		bin, _ = filepath.Abs("../../target/release/rodiff")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", bin, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// cliChange is a change as rodiff diff --format json prints it.
type cliChange struct {
	Path       json.RawMessage `json:"path"` // a string, or an array of bytes
	Kind       string          `json:"kind"`
	Type       string          `json:"type"`
	Mode       *uint32         `json:"mode"`
	UID        uint32          `json:"uid"`
	GID        uint32          `json:"gid"`
	Size       uint64          `json:"size"`
	MTime      json.Number     `json:"mtime"`
	Mountpoint bool            `json:"mountpoint"`
	Container  string          `json:"container"`
}

func (c *cliChange) path(t *testing.T) []byte {
	var s string
	if err := json.Unmarshal(c.Path, &s); err == nil {
		return []byte(s)
	}
	var b []byte
	var ints []int
	if err := json.Unmarshal(c.Path, &ints); err != nil {
		t.Fatalf("path %s: %v", c.Path, err)
	}
	for _, i := range ints {
		b = append(b, byte(i))
	}
	return b
}

func cliDiff(t *testing.T, name string) []cliChange {
	dec := json.NewDecoder(bytes.NewReader(cli(t, "diff", name, "--format", "json")))
	dec.UseNumber()
	var out []cliChange
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameAsCLI fails unless Go's changes are the CLI's, change by change, field by field.
func sameAsCLI(t *testing.T, got []rodiff.Change, want []cliChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("Go has %d changes, the CLI %d", len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		g, w := got[i], want[i]
		where := fmt.Sprintf("change %d (%q)", i, g.Path)
		if !bytes.Equal(g.Path, w.path(t)) {
			t.Errorf("%s: path %q, CLI %q", where, g.Path, w.path(t))
		}
		if g.Kind.String() != w.Kind || g.Type.String() != w.Type || g.Mountpoint != w.Mountpoint || g.Container != w.Container {
			t.Errorf("%s: %v %v mountpoint=%v container=%q, CLI %+v", where, g.Kind, g.Type, g.Mountpoint, g.Container, w)
		}
		if g.HasMetadata != (w.Mode != nil) {
			t.Errorf("%s: HasMetadata %v, CLI has mode: %v", where, g.HasMetadata, w.Mode != nil)
			continue
		}
		if !g.HasMetadata {
			continue
		}
		sec, nsec, _ := strings.Cut(w.MTime.String(), ".")
		if g.Mode != *w.Mode || g.UID != w.UID || g.GID != w.GID || g.Size != w.Size ||
			strconv.FormatInt(g.MTime.Unix(), 10) != sec || fmt.Sprintf("%09d", g.MTime.Nanosecond()) != nsec {
			t.Errorf("%s: mode %o uid %d gid %d size %d mtime %d.%09d, CLI mode %o uid %d gid %d size %d mtime %s",
				where, g.Mode, g.UID, g.GID, g.Size, g.MTime.Unix(), g.MTime.Nanosecond(),
				*w.Mode, w.UID, w.GID, w.Size, w.MTime)
		}
	}
}

func find(changes []rodiff.Change, path string) *rodiff.Change {
	for i := range changes {
		if string(changes[i].Path) == path {
			return &changes[i]
		}
	}
	return nil
}

func TestDiffMatchesCLI(t *testing.T) {
	name := fixture(t)
	client := newClient(t)
	got, err := client.Diff(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	sameAsCLI(t, got, cliDiff(t, name))
	// What the script did, seen through the Go types.
	checks := []struct {
		path string
		kind rodiff.Kind
		typ  rodiff.FileType
	}{
		{"/data/a", rodiff.Added, rodiff.File}, {"/data/link", rodiff.Added, rodiff.Symlink},
		{"/data/fifo", rodiff.Added, rodiff.Fifo}, {"/data/null", rodiff.Added, rodiff.CharDevice},
		{"/data/caf\xe9", rodiff.Added, rodiff.File}, {"/srv/data/a.txt", rodiff.Changed, rodiff.File},
		{"/bin/vi", rodiff.Deleted, rodiff.Symlink}, {"/data/sub", rodiff.Added, rodiff.Dir},
	}
	for _, c := range checks {
		ch := find(got, c.path)
		if ch == nil || ch.Kind != c.kind || ch.Type != c.typ {
			t.Errorf("%q: got %+v, want %v %v", c.path, ch, c.kind, c.typ)
		}
	}
	if a := find(got, "/data/a"); a == nil || a.UID != 1234 || a.GID != 5678 || a.Size != 6 || a.MTime.IsZero() {
		t.Errorf("/data/a: %+v", a)
	}
	if b := find(got, "/data/sub/big"); b == nil || b.Mode != 0o4750 || b.FileMode().String() != "urwxr-x---" || b.Size != 1000 {
		t.Errorf("/data/sub/big: %+v (%v)", b, b.FileMode())
	}
	if !sort.SliceIsSorted(got, func(i, j int) bool { return bytes.Compare(got[i].Path, got[j].Path) < 0 }) {
		t.Error("Diff's changes are not sorted by path")
	}
}

func TestDiffStreamDeliversEveryChange(t *testing.T) {
	name := fixture(t)
	client := newClient(t)
	want, err := client.Diff(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var got []rodiff.Change
	batches := 0
	err = client.DiffStream(context.Background(), name, func(batch []rodiff.Change) error {
		batches++
		got = append(got, batch...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return bytes.Compare(got[i].Path, got[j].Path) < 0 })
	if len(got) != len(want) {
		t.Fatalf("stream: %d changes in %d batches, Diff: %d", len(got), batches, len(want))
	}
	for i := range got {
		if got[i].String() != want[i].String() || got[i].Mode != want[i].Mode || !got[i].MTime.Equal(want[i].MTime) {
			t.Errorf("stream %v, Diff %v", got[i], want[i])
		}
	}
}

func TestPathsOnly(t *testing.T) {
	name := fixture(t)
	client := newClient(t)
	full, err := client.Diff(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	paths, err := client.Diff(context.Background(), name, rodiff.PathsOnly())
	if err != nil {
		t.Fatal(err)
	}
	var streamed []rodiff.Change
	err = client.DiffStream(context.Background(), name, func(b []rodiff.Change) error { streamed = append(streamed, b...); return nil }, rodiff.PathsOnly())
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(streamed, func(i, j int) bool { return bytes.Compare(streamed[i].Path, streamed[j].Path) < 0 })
	if len(paths) != len(full) || len(streamed) != len(full) {
		t.Fatalf("%d and %d changes paths only, %d with metadata", len(paths), len(streamed), len(full))
	}
	for i := range full {
		for _, p := range []rodiff.Change{paths[i], streamed[i]} {
			if p.String() != full[i].String() || p.Type != full[i].Type || p.HasMetadata || p.Mode != 0 || !p.MTime.IsZero() {
				t.Errorf("paths only %+v, with metadata %+v", p, full[i])
			}
		}
	}
}

func TestDiffStreamStopsEarly(t *testing.T) {
	name := big(t)
	client := newClient(t)
	calls, seen := 0, 0
	err := client.DiffStream(context.Background(), name, func(batch []rodiff.Change) error {
		calls++
		seen += len(batch)
		return rodiff.Stop
	})
	if err != nil {
		t.Fatalf("DiffStream stopped with Stop: %v", err)
	}
	if calls != 1 || seen == 0 || seen >= 20000 {
		t.Fatalf("stopped after the first batch: %d calls, %d changes", calls, seen)
	}

	// Another error stops it too, and is DiffStream's error.
	mine := errors.New("enough")
	calls = 0
	err = client.DiffStream(context.Background(), name, func([]rodiff.Change) error { calls++; return mine })
	if err != mine || calls != 1 {
		t.Fatalf("err %v after %d calls, want %v after 1", err, calls, mine)
	}

	// A panic in the function comes back in the caller's goroutine, after rodiff returned.
	defer func() {
		if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), "boom") {
			t.Fatalf("recovered %v", v)
		}
		// The client still works.
		if _, err := client.Diff(context.Background(), fixture(t)); err != nil {
			t.Fatal(err)
		}
	}()
	client.DiffStream(context.Background(), name, func([]rodiff.Change) error { panic("boom") })
	t.Fatal("DiffStream did not panic")
}

func TestErrorsAreTyped(t *testing.T) {
	client := newClient(t)
	ctx := context.Background()
	_, err := client.Diff(ctx, "no-such-container-rodiff-go")
	var rerr *rodiff.Error
	if !errors.Is(err, rodiff.ErrNotFound) || !errors.As(err, &rerr) || rerr.Code != rodiff.CodeNotFound ||
		!strings.Contains(rerr.Message, "no-such-container-rodiff-go") || errors.Is(err, rodiff.ErrRuntimeUnavailable) {
		t.Errorf("unknown container: %#v", err)
	}
	if _, err := client.Plan(ctx, "no-such-container-rodiff-go", rodiff.PlanJSON); !errors.Is(err, rodiff.ErrNotFound) {
		t.Errorf("plan of an unknown container: %v", err)
	}
	if err := client.DiffStream(ctx, "no-such-container-rodiff-go", func([]rodiff.Change) error { return nil }); !errors.Is(err, rodiff.ErrNotFound) {
		t.Errorf("stream of an unknown container: %v", err)
	}

	// A dead endpoint: a socket nobody listens on.
	dead := filepath.Join(t.TempDir(), "dead.sock")
	deadClient, err := rodiff.NewClient(rodiff.Options{DockerHost: "unix://" + dead, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer deadClient.Close()
	_, err = deadClient.Diff(ctx, "web")
	if !errors.Is(err, rodiff.ErrRuntimeUnavailable) || !strings.Contains(err.Error(), dead) {
		t.Errorf("dead endpoint: %v", err)
	}

	// Invalid arguments, caught in Go or in rodiff.
	for what, err := range map[string]error{
		"NUL in a name": func() error { _, err := client.Diff(ctx, "a\x00b"); return err }(),
		"empty name":    func() error { _, err := client.Diff(ctx, ""); return err }(),
		"bad pod":       func() error { _, err := client.Diff(ctx, "", rodiff.WithPod("no-slash")); return err }(),
		"bad format":    func() error { _, err := client.Plan(ctx, fixture(t), rodiff.PlanFormat(99)); return err }(),
		"verify a pod": func() error {
			_, err := client.Verify(ctx, "", rodiff.VerifyOptions{}, rodiff.WithPod("ns/p"))
			return err
		}(),
	} {
		if !errors.Is(err, rodiff.ErrInvalidArgument) {
			t.Errorf("%s: %v", what, err)
		}
	}
	if _, err := rodiff.NewClient(rodiff.Options{Runtime: 7}); !errors.Is(err, rodiff.ErrInvalidArgument) {
		t.Errorf("unknown runtime: %v", err)
	}
}

func TestContextCancelsALongScan(t *testing.T) {
	name := big(t)
	client := newClient(t)
	start := time.Now()
	full, err := client.Diff(context.Background(), name)
	if err != nil || len(full) < 20000 {
		t.Fatalf("%d changes, %v", len(full), err)
	}
	whole := time.Since(start)

	// Cancelled while rodiff runs: the goroutine trips the call's cancel token.
	cancelledMidway := false
	for _, frac := range []time.Duration{2, 4, 8, 16, 32} {
		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(whole/frac, cancel)
		start := time.Now()
		changes, err := client.Diff(ctx, name)
		took := time.Since(start)
		timer.Stop()
		cancel()
		if err == nil {
			t.Logf("cancel after %v: the diff (%d changes) finished first, in %v", whole/frac, len(changes), took)
			continue
		}
		if !errors.Is(err, rodiff.ErrCancelled) || !errors.Is(err, context.Canceled) || changes != nil {
			t.Fatalf("cancelled diff: %v", err)
		}
		t.Logf("cancel after %v (whole diff %v): %v in %v", whole/frac, whole, err, took)
		cancelledMidway = true
		break
	}
	if !cancelledMidway {
		t.Fatal("no diff was cancelled midway")
	}

	// A context that is already done: no call to rodiff at all.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := client.Diff(ctx, name); !errors.Is(err, rodiff.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Errorf("done context: %v", err)
	}

	// A deadline: ErrTimeout and context.DeadlineExceeded.
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := client.Diff(ctx, name); !errors.Is(err, rodiff.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v", err)
	}

	// The stream checks the context between batches too.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err = client.DiffStream(ctx, name, func([]rodiff.Change) error {
		calls++
		cancel()
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	if !errors.Is(err, rodiff.ErrCancelled) || !errors.Is(err, context.Canceled) || calls > 2 {
		t.Errorf("stream: %v after %d calls", err, calls)
	}
}

func TestClosedClient(t *testing.T) {
	name := fixture(t)
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: dockerHost(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Diff(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	if client.Close() != nil || client.Close() != nil {
		t.Fatal("Close returned an error")
	}
	ctx := context.Background()
	if _, err := client.Diff(ctx, name); !errors.Is(err, rodiff.ErrClosed) {
		t.Errorf("Diff after Close: %v", err)
	}
	if err := client.DiffStream(ctx, name, func([]rodiff.Change) error { return nil }); !errors.Is(err, rodiff.ErrClosed) {
		t.Errorf("DiffStream after Close: %v", err)
	}
	if _, err := client.Plan(ctx, name, rodiff.PlanDocker); !errors.Is(err, rodiff.ErrClosed) {
		t.Errorf("Plan after Close: %v", err)
	}
	if _, err := client.Verify(ctx, name, rodiff.VerifyOptions{}); !errors.Is(err, rodiff.ErrClosed) {
		t.Errorf("Verify after Close: %v", err)
	}
}

func TestCloseCancelsRunningCalls(t *testing.T) {
	name := big(t)
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: dockerHost(t)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		var once sync.Once
		result <- client.DiffStream(context.Background(), name, func([]rodiff.Change) error {
			once.Do(func() { close(started) })
			time.Sleep(50 * time.Millisecond) // rodiff's walkers wait meanwhile: Close comes first
			return nil
		})
	}()
	<-started
	client.Close()
	err = <-result
	if err == nil {
		t.Skip("the stream ended before Close")
	}
	if !errors.Is(err, rodiff.ErrCancelled) || !errors.Is(err, rodiff.ErrClosed) {
		t.Fatalf("stream cut by Close: %v", err)
	}
}

func TestConcurrentCallsShareAClient(t *testing.T) {
	name := fixture(t)
	client := newClient(t)
	want, err := client.Diff(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				switch (g + i) % 4 {
				case 0, 1:
					got, err := client.Diff(context.Background(), name)
					if err != nil || len(got) != len(want) {
						errs <- fmt.Errorf("goroutine %d: %d changes, %v", g, len(got), err)
					}
				case 2:
					n := 0
					err := client.DiffStream(context.Background(), name, func(b []rodiff.Change) error { n += len(b); return nil })
					if err != nil || n != len(want) {
						errs <- fmt.Errorf("goroutine %d: stream %d changes, %v", g, n, err)
					}
				case 3:
					if _, err := client.Diff(context.Background(), "no-such-container-rodiff-go"); !errors.Is(err, rodiff.ErrNotFound) {
						errs <- fmt.Errorf("goroutine %d: %v", g, err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPlanMatchesCLI(t *testing.T) {
	name := fixture(t)
	client := newClient(t)
	for format, flag := range map[rodiff.PlanFormat]string{
		rodiff.PlanDocker: "docker", rodiff.PlanCompose: "compose", rodiff.PlanK8s: "k8s", rodiff.PlanJSON: "json",
	} {
		got, err := client.Plan(context.Background(), name, format)
		if err != nil {
			t.Fatalf("%s: %v", flag, err)
		}
		want := string(cli(t, "plan", name, "--format", flag))
		if strings.TrimSpace(got) != strings.TrimSpace(want) {
			t.Errorf("plan --format %s:\nGo:  %s\nCLI: %s", flag, got, want)
		}
	}
}

func TestVerify(t *testing.T) {
	name := fixture(t)
	client := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := client.Verify(ctx, name, rodiff.VerifyOptions{Probe: "test -e /data/a", Wait: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		Container string
		Failures  []interface{}
	}
	if err := json.Unmarshal(res.Report, &report); err != nil || report.Container == "" {
		t.Fatalf("report %s: %v", res.Report, err)
	}
	// The fixture's script touches /ready, which no plan makes writable: the report says so.
	if res.Passed != (len(report.Failures) == 0) {
		t.Fatalf("passed=%v with failures %v", res.Passed, report.Failures)
	}
	t.Logf("passed=%v report=%s", res.Passed, res.Report)
}
