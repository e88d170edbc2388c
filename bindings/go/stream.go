package rodiff

/*
#include <string.h>
#include "rodiff.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// stream is the state of one DiffStream call, reached from rodiff's threads through a
// cgo.Handle.
type stream struct {
	ctx context.Context
	ref string
	fn  func([]Change) error

	mu       sync.Mutex  // rodiff calls one at a time; the lock orders memory for Go too
	err      error       // why fn's scan stopped: fn's error, or the context's
	panicked bool        // fn panicked with panicVal
	panicVal interface{} // re-raised by result
	exited   bool        // fn did not return and left nothing to recover: runtime.Goexit
}

// rodiffGoBatch receives a batch from rodiff_diff_stream, through the buffer of rodiff_go_batch in
// client.go: on one of rodiff's threads, or (the last batch) on DiffStream's. It returns non-zero
// to stop the scan.
//
//export rodiffGoBatch
func rodiffGoBatch(handle C.uintptr_t, changes *C.rodiff_change, n C.size_t) C.int32_t {
	s := cgo.Handle(handle).Value().(*stream)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.panicked || s.exited {
		return 1
	}
	if s.ctx.Err() != nil {
		s.err = contextError(s.ctx, s.ref)
		return 1
	}
	var conv converter
	batch := conv.changes(unsafe.Slice(changes, int(n)))
	if err := s.call(batch); err != nil {
		s.err = err
		return 1
	}
	if s.panicked || s.exited {
		return 1
	}
	return 0
}

// call runs fn on a goroutine of its own and waits for it, so that nothing fn does unwinds through
// rodiff's frames or ends the thread rodiff called from: a panic is caught (and raised again by
// result), and so is runtime.Goexit (t.Fatal, t.FailNow, t.SkipNow), which on a thread that came
// from C would be fatal to the process (result calls it again on DiffStream's goroutine). On
// Go < 1.21, panic(nil) cannot be told from Goexit and is taken for one.
func (s *stream) call(batch []Change) (err error) {
	done := make(chan struct{})
	go func() {
		returned := false
		defer close(done)
		defer func() {
			if returned {
				return
			}
			if v := recover(); v != nil {
				s.panicked, s.panicVal = true, v
			} else {
				s.exited = true
			}
		}()
		err = s.fn(batch)
		returned = true
	}()
	<-done
	return err
}

// result is DiffStream's answer once rodiff returned RODIFF_OK.
func (s *stream) result(complete bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.panicked {
		panic(fmt.Sprintf("rodiff: DiffStream's function panicked: %v", s.panicVal))
	}
	if s.exited {
		// As fn did (t.Fatal from the callback fails the test that called DiffStream).
		runtime.Goexit()
	}
	switch {
	case errors.Is(s.err, Stop):
		return nil
	case s.err != nil:
		return s.err
	case !complete:
		// rodiff reported an incomplete scan that nothing here asked for.
		return &Error{Code: CodeStopped, Message: "container " + s.ref + ": the scan stopped early"}
	}
	return nil
}

// converter turns C's views of changes into Go Changes, sharing one string among the changes of
// a container.
type converter struct {
	name string
}

// changes converts views into new Changes.
func (cv *converter) changes(views []C.rodiff_change) []Change {
	return cv.appendChanges(make([]Change, 0, len(views)), views)
}

// appendChanges appends the Changes of views to out.
func (cv *converter) appendChanges(out []Change, views []C.rodiff_change) []Change {
	total := 0
	for i := range views {
		total += int(views[i].path_len)
	}
	// One allocation for the paths of views; each Path is capped so that appending to it copies.
	arena := make([]byte, 0, total)
	first := len(out)
	out = out[:first+len(views)]
	for i := range views {
		v := &views[i]
		start := len(arena)
		if v.path_len > 0 {
			arena = append(arena, unsafe.Slice((*byte)(unsafe.Pointer(v.path)), int(v.path_len))...)
		}
		c := &out[first+i]
		*c = Change{}
		c.Path = arena[start:len(arena):len(arena)]
		c.Kind = Kind(byte(v.kind))
		c.Type = FileType(v.file_type)
		c.Mountpoint = bool(v.mountpoint)
		if v.has_metadata {
			c.HasMetadata = true
			c.Mode = uint32(v.mode)
			c.UID = uint32(v.uid)
			c.GID = uint32(v.gid)
			c.Size = uint64(v.size)
			c.MTime = time.Unix(int64(v.mtime_sec), int64(v.mtime_nsec))
		}
		if v.container != nil {
			c.Container = cv.container(v.container)
		}
	}
	return out
}

func (cv *converter) container(p *C.char) string {
	b := unsafe.Slice((*byte)(unsafe.Pointer(p)), int(C.strlen(p)))
	if string(b) != cv.name {
		cv.name = string(b)
	}
	return cv.name
}
