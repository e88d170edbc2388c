// Command godiff diffs a container through the Go package, for bench/bench.py: it prints the
// changes as `rodiff diff` does ("A /path", touched entries left out), to compare the two.
//
//	godiff [-stream] [-paths] [-count] CONTAINER
//
// With -stream it uses Client.DiffStream (unsorted batches), else Client.Diff (a sorted list);
// with -paths it asks for no metadata (rodiff.PathsOnly), as `rodiff diff` does.
// With -count it prints only the number of changes. It reads DOCKER_HOST.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"

	"rodiff.dev/rodiff"
)

func main() {
	stream := flag.Bool("stream", false, "use DiffStream instead of Diff")
	count := flag.Bool("count", false, "print the number of changes only")
	pathsOnly := flag.Bool("paths", false, "paths, kinds and types only (rodiff.PathsOnly)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: godiff [-stream] [-paths] [-count] CONTAINER")
		os.Exit(2)
	}
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: os.Getenv("DOCKER_HOST")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer client.Close()
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	n := 0
	print := func(changes []rodiff.Change) {
		n += len(changes)
		if *count {
			return
		}
		for i := range changes {
			if c := &changes[i]; c.Kind != rodiff.Touched {
				out.WriteByte(byte(c.Kind))
				out.WriteByte(' ')
				out.Write(c.Path)
				out.WriteByte('\n')
			}
		}
	}
	ctx := context.Background()
	var opts []rodiff.CallOption
	if *pathsOnly {
		opts = append(opts, rodiff.PathsOnly())
	}
	if *stream {
		err = client.DiffStream(ctx, flag.Arg(0), func(batch []rodiff.Change) error { print(batch); return nil }, opts...)
	} else {
		var changes []rodiff.Change
		changes, err = client.Diff(ctx, flag.Arg(0), opts...)
		print(changes)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *count {
		fmt.Fprintln(out, n)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
