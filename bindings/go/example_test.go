package rodiff_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"rodiff.dev/rodiff"
)

// Diff a Docker container and print what it wrote, as `rodiff diff` does.
func Example() {
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: os.Getenv("DOCKER_HOST")})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	changes, err := client.Diff(context.Background(), "web")
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range changes {
		fmt.Println(c) // "A /var/cache/app.db"
	}
}

// Diff with a deadline: a call that does not finish in time stops inside rodiff.
func ExampleClient_Diff() {
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: os.Getenv("DOCKER_HOST")})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changes, err := client.Diff(ctx, "web")
	switch {
	case errors.Is(err, rodiff.ErrNotFound):
		log.Fatal("no container web")
	case errors.Is(err, context.DeadlineExceeded):
		log.Fatal("too slow")
	case err != nil:
		log.Fatal(err)
	}
	for _, c := range changes {
		if c.Kind != rodiff.Deleted {
			fmt.Printf("%s %s %o %d:%d %d %s\n", c.Kind, c.Type, c.Mode, c.UID, c.GID, c.Size, c.Path)
		}
	}
}

// Count the files a container added without holding the whole diff, stopping at the first
// million.
func ExampleClient_DiffStream() {
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: os.Getenv("DOCKER_HOST")})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	added := 0
	err = client.DiffStream(context.Background(), "web", func(batch []rodiff.Change) error {
		for _, c := range batch {
			if c.Kind == rodiff.Added && c.Type == rodiff.File {
				added++
			}
		}
		if added >= 1_000_000 {
			return rodiff.Stop
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(added, "files added")
}

// The docker run flags that let container db run with a read-only root filesystem.
func ExampleClient_Plan() {
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: os.Getenv("DOCKER_HOST")})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	flags, err := client.Plan(context.Background(), "db", rodiff.PlanDocker)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("docker run", flags, "postgres:16")
}

// The plans of every container of a Kubernetes pod, from containerd, as a strategic-merge patch.
func ExampleWithPod() {
	client, err := rodiff.NewClient(rodiff.Options{Runtime: rodiff.Containerd, ContainerdNamespace: "k8s.io"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	patch, err := client.Plan(context.Background(), "", rodiff.PlanK8s, rodiff.WithPod("shop/web-0"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(patch)
}

// Prove a plan: run container db again read-only with the plan's mounts, and probe it.
func ExampleClient_Verify() {
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: os.Getenv("DOCKER_HOST")})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	result, err := client.Verify(context.Background(), "db", rodiff.VerifyOptions{
		Probe: "pg_isready",
		Wait:  5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("passed:", result.Passed)
	fmt.Println(string(result.Report))
}

// Errors from rodiff are *rodiff.Error values that match the sentinels with errors.Is.
func ExampleError() {
	client, err := rodiff.NewClient(rodiff.Options{DockerHost: "unix:///nonexistent/docker.sock"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	_, err = client.Diff(context.Background(), "web")
	var rerr *rodiff.Error
	fmt.Println(errors.Is(err, rodiff.ErrRuntimeUnavailable), errors.Is(err, rodiff.ErrNotFound))
	fmt.Println(errors.As(err, &rerr), rerr.Code)
	// Output:
	// true false
	// true runtime unavailable
}

// A closed client refuses calls; Close may be called again.
func ExampleClient_Close() {
	client, err := rodiff.NewClient(rodiff.Options{})
	if err != nil {
		log.Fatal(err)
	}
	client.Close()
	client.Close()
	_, err = client.Diff(context.Background(), "web")
	fmt.Println(errors.Is(err, rodiff.ErrClosed))
	// Output: true
}

// A change prints as rodiff diff prints it; its mode converts to Go's form.
func ExampleChange() {
	c := rodiff.Change{Path: []byte("/usr/bin/passwd"), Kind: rodiff.Changed, Type: rodiff.File, Mode: 0o4755}
	fmt.Println(c)
	fmt.Println(c.FileMode())
	// Output:
	// C /usr/bin/passwd
	// urwxr-xr-x
}
