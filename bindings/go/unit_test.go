package rodiff_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"testing"

	"rodiff.dev/rodiff"
)

func TestVersion(t *testing.T) {
	if v := rodiff.Version(); strings.Count(v, ".") != 2 {
		t.Fatalf("Version() = %q", v)
	}
}

func TestErrorMatching(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &rodiff.Error{Code: rodiff.CodeNotFound, Message: "container web: no such container"})
	if !errors.Is(err, rodiff.ErrNotFound) || errors.Is(err, rodiff.ErrTimeout) || errors.Is(err, context.Canceled) {
		t.Fatal("errors.Is on a wrapped *Error")
	}
	var e *rodiff.Error
	if !errors.As(err, &e) || e.Code != rodiff.CodeNotFound || e.Error() != "rodiff: container web: no such container" {
		t.Fatalf("errors.As: %#v", e)
	}
	if rodiff.CodeTimeout.String() != "timeout" || rodiff.Code(999).String() != "rodiff error 999" {
		t.Fatal("Code.String")
	}
}

func TestChangeForms(t *testing.T) {
	c := rodiff.Change{Path: []byte("/var/run/x"), Kind: rodiff.Deleted, Type: rodiff.Dir, Mode: 0o1777}
	if c.String() != "D /var/run/x" || c.PathString() != "/var/run/x" || c.Type.String() != "dir" {
		t.Fatal(c.String())
	}
	if c.FileMode() != fs.ModeDir|fs.ModeSticky|0o777 {
		t.Fatalf("FileMode %v", c.FileMode())
	}
	if rodiff.FileType(42).String() != "unknown" {
		t.Fatal("unknown file type")
	}
}

func TestZeroAndForgottenClients(t *testing.T) {
	var zero rodiff.Client
	if _, err := zero.Diff(context.Background(), "web"); !errors.Is(err, rodiff.ErrClosed) {
		t.Fatalf("zero Client: %v", err)
	}
	zero.Close()
	// Clients nobody closes are freed by their finalizer.
	for i := 0; i < 20; i++ {
		if _, err := rodiff.NewClient(rodiff.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
}
