package probes

// Adversarial probes of the Go package (issue 10). Run in a sandbox:
//
//	cargo build && scripts/sandbox.sh run --images busybox -- bindings/probes/go/run.sh [-run NAME]
//
// Every test checks one property; a failing test is a finding.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rodiff.dev/rodiff"
)

const image = "rodiff-test/busybox:latest"

var small, bigc string

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

func TestMain(m *testing.M) {
	if os.Getenv("PROBE_CHILD") != "" { // re-executed by a test: the containers exist
		small, bigc = os.Getenv("PROBE_SMALL"), os.Getenv("PROBE_BIGC")
		os.Exit(m.Run())
	}
	if os.Getenv("DOCKER_HOST") == "" {
		fmt.Fprintln(os.Stderr, "DOCKER_HOST unset: run in the sandbox")
		os.Exit(2)
	}
	small = fmt.Sprintf("probe-go-small-%d", os.Getpid())
	bigc = fmt.Sprintf("probe-go-big-%d", os.Getpid())
	if _, err := docker("run", "-d", "--network", "none", "--name", small, image, "sh", "-c", "echo hi > /srv/x; touch /ready; exec sleep 3600"); err != nil {
		panic(err)
	}
	if _, err := docker("run", "--network", "none", "--name", bigc, image, "sh", "-c",
		"mkdir /w && for d in $(seq 40); do mkdir /w/$d; for f in $(seq 500); do : > /w/$d/$f; done; done"); err != nil {
		panic(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := docker("exec", small, "test", "-e", "/ready"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	os.Setenv("PROBE_SMALL", small)
	os.Setenv("PROBE_BIGC", bigc)
	code := m.Run()
	docker("rm", "-f", small, bigc)
	os.Exit(code)
}

func client(t testing.TB) *rodiff.Client {
	t.Helper()
	c, err := rodiff.NewClient(rodiff.Options{DockerHost: os.Getenv("DOCKER_HOST")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runChild runs this test binary's test `name` in a child process and returns its output and
// exit error (for probes that may crash or hang the process).
func runChild(t *testing.T, name string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), "PROBE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("hung for %v (killed)", timeout)
	}
	return string(out), err
}

// A fn that panics with nil (panic(nil): on Go 1.19, recover() returns nil) must still stop the
// scan and be raised again, as DiffStream's doc promises for a panic in fn.
func TestPanicNilInStream(t *testing.T) {
	c := client(t)
	defer c.Close()
	var calls, after int32
	returned := false
	done := make(chan struct{})
	// On Go < 1.21 panic(nil) cannot be told from runtime.Goexit: DiffStream must then either panic
	// or end its goroutine as Goexit does — never return as if nothing happened.
	go func() {
		defer close(done)
		defer func() { recover() }()
		err := c.DiffStream(context.Background(), bigc, func(b []rodiff.Change) error {
			if atomic.AddInt32(&calls, 1) == 1 {
				panic(nil)
			}
			atomic.AddInt32(&after, 1)
			return nil
		})
		t.Logf("DiffStream returned %v", err)
		returned = true
	}()
	<-done
	if returned || after > 0 {
		t.Errorf("go %s: panic(nil) in fn was swallowed: DiffStream returned=%v, fn called %d more times", runtime.Version(), returned, after)
	}
}

// t.FailNow (runtime.Goexit) in fn, a common way to fail a test from a callback: the process must
// not crash (run in a child).
func TestGoexitInStreamChild(t *testing.T) {
	if os.Getenv("PROBE_CHILD") == "" {
		t.Skip("child only")
	}
	c := client(t)
	c.DiffStream(context.Background(), bigc, func(b []rodiff.Change) error {
		t.Fatal("failing from the callback")
		return nil
	})
}

func TestGoexitInStream(t *testing.T) {
	out, err := runChild(t, "TestGoexitInStreamChild", 60*time.Second)
	crashed := strings.Contains(out, "fatal error") || strings.Contains(out, "SIGABRT") || strings.Contains(out, "panic:")
	t.Logf("child: %v\n%s", err, head(out, 25))
	if crashed || (err != nil && strings.Contains(err.Error(), "hung")) {
		t.Errorf("t.Fatal inside DiffStream's fn crashed or hung the process (not documented): %v", err)
	}
}

// Close called from inside fn would wait for the call that is waiting for fn: DiffStream's doc
// forbids it (not probed: it deadlocks by design).

// Concurrent Diff/Plan/DiffStream and Close from several goroutines: no data race (-race), every
// call returns nil or an error that matches ErrClosed.
func TestCloseRace(t *testing.T) {
	for round := 0; round < 5; round++ {
		c := client(t)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					var err error
					switch g % 3 {
					case 0:
						_, err = c.Diff(context.Background(), bigc)
					case 1:
						err = c.DiffStream(context.Background(), bigc, func([]rodiff.Change) error { return nil })
					default:
						_, err = c.Plan(context.Background(), small, rodiff.PlanJSON)
					}
					if err != nil && !errors.Is(err, rodiff.ErrClosed) {
						t.Errorf("call during Close: %v (does not match ErrClosed)", err)
					}
					if errors.Is(err, rodiff.ErrClosed) {
						return
					}
				}
			}(g)
		}
		time.Sleep(time.Duration(20+round*30) * time.Millisecond)
		var cw sync.WaitGroup
		for i := 0; i < 3; i++ {
			cw.Add(1)
			go func() { defer cw.Done(); c.Close() }()
		}
		cw.Wait()
		close(stop)
		wg.Wait()
	}
}

// After a concurrent Close returns, the client is closed: a second, concurrent Close must not
// return before the first has freed the client (Close is documented as "waits for them").
func TestConcurrentCloseWaits(t *testing.T) {
	c := client(t)
	started := make(chan struct{})
	var fnDone int32
	go c.DiffStream(context.Background(), bigc, func([]rodiff.Change) error {
		select {
		case <-started:
		default:
			close(started)
		}
		time.Sleep(300 * time.Millisecond)
		atomic.StoreInt32(&fnDone, 1)
		return nil
	})
	<-started
	go c.Close()
	time.Sleep(20 * time.Millisecond)
	c.Close() // the second Close
	if atomic.LoadInt32(&fnDone) == 0 {
		t.Errorf("a second Close returned while the first was still waiting for a running call")
	}
}

// Close during a DiffStream: the stream ends with an error matching ErrCancelled and ErrClosed.
func TestCloseDuringStream(t *testing.T) {
	c := client(t)
	started := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		var once sync.Once
		res <- c.DiffStream(context.Background(), bigc, func([]rodiff.Change) error {
			once.Do(func() { close(started) })
			time.Sleep(50 * time.Millisecond)
			return nil
		})
	}()
	<-started
	c.Close()
	err := <-res
	if err == nil || !errors.Is(err, rodiff.ErrClosed) || !errors.Is(err, rodiff.ErrCancelled) {
		t.Errorf("DiffStream after Close: %v (want ErrClosed and ErrCancelled)", err)
	}
}

// Calls cancelled at random moments: nil or a context.Canceled match, never anything else;
// no goroutine leak.
func TestContextCancelRace(t *testing.T) {
	c := client(t)
	defer c.Close()
	before := runtime.NumGoroutine()
	for i := 0; i < 120; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		go func(d time.Duration) { time.Sleep(d); cancel() }(time.Duration(i%12) * time.Millisecond)
		var err error
		switch i % 3 {
		case 0:
			_, err = c.Diff(ctx, bigc)
		case 1:
			err = c.DiffStream(ctx, bigc, func([]rodiff.Change) error { return nil })
		default:
			_, err = c.Plan(ctx, small, rodiff.PlanDocker)
		}
		if err != nil && !(errors.Is(err, context.Canceled) && errors.Is(err, rodiff.ErrCancelled)) {
			t.Errorf("iteration %d: %v (code %v)", i, err, code(err))
		}
		cancel()
	}
	time.Sleep(200 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("goroutines: %d before, %d after 120 cancelled calls", before, after)
	}
}

// A 1 ms deadline: ErrTimeout and context.DeadlineExceeded.
func TestDeadline1ms(t *testing.T) {
	c := client(t)
	defer c.Close()
	bad := 0
	for i := 0; i < 200; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, err := c.Diff(ctx, bigc)
		cancel()
		if err != nil && !(errors.Is(err, rodiff.ErrTimeout) && errors.Is(err, context.DeadlineExceeded)) {
			if bad++; bad <= 3 {
				t.Errorf("1 ms deadline: %v (code %v; errors.Is ErrTimeout %v, context.DeadlineExceeded %v)", err, code(err),
					errors.Is(err, rodiff.ErrTimeout), errors.Is(err, context.DeadlineExceeded))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of 200 timed-out calls did not match context.DeadlineExceeded", bad)
	}
}

func code(err error) interface{} {
	var e *rodiff.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "not *Error"
}

// errors.Is maps every code to its sentinel and to no other, also when wrapped.
func TestErrorsIsEveryCode(t *testing.T) {
	sentinels := map[rodiff.Code]error{
		1: rodiff.ErrRuntimeUnavailable, 2: rodiff.ErrNotFound, 3: rodiff.ErrUnsupportedStorage, 4: rodiff.ErrProtocol,
		5: rodiff.ErrLayerVanished, 6: rodiff.ErrSnapshotVanished, 7: rodiff.ErrHostileLayer, 8: rodiff.ErrIO,
		9: rodiff.ErrUnrepresentable, 10: rodiff.ErrInvalidPlan, 11: rodiff.ErrRuntimeCall, 12: rodiff.ErrCancelled,
		13: rodiff.ErrSink, 14: rodiff.ErrTimeout, 15: rodiff.ErrStopped, 100: rodiff.ErrNullArgument,
		101: rodiff.ErrInvalidArgument, 102: rodiff.ErrPanic, 103: rodiff.ErrOther,
	}
	for c, s := range sentinels {
		err := fmt.Errorf("wrapped: %w", &rodiff.Error{Code: c, Message: "x"})
		for c2, s2 := range sentinels {
			if errors.Is(err, s2) != (c == c2) {
				t.Errorf("code %d vs sentinel of %d: errors.Is %v", c, c2, errors.Is(err, s2))
			}
		}
		_ = s
	}
	// real errors
	c := client(t)
	defer c.Close()
	_, err := c.Diff(context.Background(), "no-such-probe")
	if !errors.Is(err, rodiff.ErrNotFound) {
		t.Errorf("unknown container: %v", err)
	}
	_, err = c.Diff(context.Background(), "a\x00b")
	if !errors.Is(err, rodiff.ErrInvalidArgument) {
		t.Errorf("NUL in name: %v", err)
	}
	_, err = c.Plan(context.Background(), small, rodiff.PlanFormat(99))
	if !errors.Is(err, rodiff.ErrInvalidArgument) {
		t.Errorf("plan format 99: %v", err)
	}
	dead, _ := rodiff.NewClient(rodiff.Options{DockerHost: "unix:///nonexistent.sock"})
	_, err = dead.Diff(context.Background(), small)
	if !errors.Is(err, rodiff.ErrRuntimeUnavailable) || !strings.Contains(err.Error(), "nonexistent.sock") {
		t.Errorf("dead endpoint: %v", err)
	}
	dead.Close()
	_, err = dead.Diff(context.Background(), small)
	if !errors.Is(err, rodiff.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	var zero rodiff.Client
	if _, err := zero.Diff(context.Background(), small); !errors.Is(err, rodiff.ErrClosed) {
		t.Errorf("zero Client: %v", err)
	}
	_, err = rodiff.NewClient(rodiff.Options{Runtime: 7})
	if !errors.Is(err, rodiff.ErrInvalidArgument) {
		t.Errorf("runtime 7: %v", err)
	}
}

// A 1 MiB name is not "runtime unavailable": dockerd is up; the answer is a not-found or an
// invalid argument.
func TestHugeNameClass(t *testing.T) {
	c := client(t)
	defer c.Close()
	_, err := c.Diff(context.Background(), strings.Repeat("a", 1<<20))
	if errors.Is(err, rodiff.ErrRuntimeUnavailable) {
		t.Errorf("1 MiB name reported as ErrRuntimeUnavailable (dockerd is up): %.200s", err)
	}
}

// Options outside what the C types hold must be refused, not truncated: Walkers 1<<32 is uint32 0
// (one walker per CPU), Timeout near MaxInt64 overflows the rounding.
func TestOptionTruncation(t *testing.T) {
	c, err := rodiff.NewClient(rodiff.Options{DockerHost: os.Getenv("DOCKER_HOST"), Walkers: 1 << 32})
	if err == nil {
		t.Errorf("Walkers: 1<<32 accepted (silently becomes uint32 0: the default)")
		c.Close()
	}
	c, err = rodiff.NewClient(rodiff.Options{DockerHost: os.Getenv("DOCKER_HOST"), Timeout: math.MaxInt64})
	if err != nil {
		t.Errorf("Timeout MaxInt64: %v", err)
	} else {
		if _, err := c.Diff(context.Background(), small); err != nil {
			t.Errorf("Timeout MaxInt64: Diff: %v", err)
		}
		c.Close()
	}
}

func threads() int {
	d, _ := os.ReadDir("/proc/self/task")
	return len(d)
}

// Clients dropped without Close: the finalizer frees them and their threads end.
func TestFinalizerFrees(t *testing.T) {
	base := threads()
	for i := 0; i < 10; i++ {
		c := client(t)
		if _, err := c.Diff(context.Background(), small); err != nil {
			t.Fatal(err)
		}
	}
	peak := threads()
	for i := 0; i < 20 && threads() > base+4; i++ {
		runtime.GC()
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("threads: %d at start, %d with 10 unclosed clients, %d after GC", base, peak, threads())
	if threads() > base+4 {
		t.Errorf("unclosed clients' threads still run after GC: %d (start %d)", threads(), base)
	}
}

// Verify cancelled or timed out at any moment removes the container it made.
func TestVerifyCancelLeavesNothing(t *testing.T) {
	c := client(t)
	defer c.Close()
	list := func() map[string]bool {
		out, _ := docker("ps", "-aq", "--no-trunc")
		m := map[string]bool{}
		for _, l := range strings.Fields(out) {
			m[l] = true
		}
		return m
	}
	before := list()
	for _, d := range []time.Duration{5, 30, 100, 250, 500, 1000, 2000} {
		ctx, cancel := context.WithTimeout(context.Background(), d*time.Millisecond)
		_, err := c.Verify(ctx, small, rodiff.VerifyOptions{Wait: 3 * time.Second, Probe: "true"})
		cancel()
		t.Logf("verify with %v deadline: %v", d*time.Millisecond, err)
	}
	time.Sleep(time.Second)
	for id := range list() {
		if !before[id] {
			info, _ := docker("inspect", "--format", "{{.Name}} {{.State.Status}}", id)
			t.Errorf("container left behind by a cancelled Verify: %s %s", id[:12], info)
		}
	}
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func head(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "\n")
}
