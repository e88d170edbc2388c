/*
 * check.h: what the C tests of rodiff.h share (header-only, C11 + POSIX).
 *
 * CHECK(cond, fmt, ...) reports a failure and goes on; REQUIRE stops the program. Every test
 * ends with `return check_done();`, which exits non-zero when a check failed. The tests read
 * the sandbox's endpoints from the environment (scripts/sandbox.sh sets them) and pass them to
 * rodiff explicitly: the library itself reads no environment variable.
 */
#ifndef RODIFF_TEST_CHECK_H
#define RODIFF_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <pthread.h>
#include <time.h>

#include "rodiff.h"

static _Atomic int check_failures; /* CHECK may run on several threads */
static int check_own_threads = 1;  /* the test's threads when no client is left: 2 in check_in_thread */

#define CHECK(cond, ...)                                                                      \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                \
      fprintf(stderr, __VA_ARGS__);                                                           \
      fputc('\n', stderr);                                                                    \
      check_failures++;                                                                       \
    }                                                                                         \
  } while (0)

#define REQUIRE(cond, ...)                                                                    \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      fprintf(stderr, "%s:%d: requirement failed: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                                           \
      fputc('\n', stderr);                                                                    \
      exit(1);                                                                                \
    }                                                                                         \
  } while (0)

static inline int check_done(void) {
  if (check_failures) fprintf(stderr, "%d check(s) failed\n", check_failures);
  return check_failures ? 1 : 0;
}

/* The environment variable NAME, which the sandbox sets. */
static inline const char *check_env(const char *name) {
  const char *v = getenv(name);
  REQUIRE(v && *v, "%s is not set: run through bindings/c/tests/run.sh in the sandbox", name);
  return v;
}

/* A client of the sandbox's dockerd (walkers: 0 means one per CPU). */
static inline rodiff_client *check_docker_client(uint32_t walkers) {
  rodiff_options o = {0};
  o.runtime = RODIFF_RUNTIME_DOCKER;
  o.docker_host = check_env("DOCKER_HOST");
  o.walkers = walkers;
  rodiff_client *client = NULL;
  rodiff_error *error = NULL;
  rodiff_result r = rodiff_client_new(&o, &client, &error);
  REQUIRE(r == RODIFF_OK && client, "rodiff_client_new: %d %s", (int)r, rodiff_error_message(error));
  return client;
}

/* Checks that a call failed with `code`, with an error object of that code whose message holds
 * `needle` (NULL: any message); frees the error. */
#define CHECK_ERROR(r, error, code, needle)                                                   \
  do {                                                                                        \
    rodiff_result r_ = (r); /* before `error` is read: it writes it */                        \
    check_error(__FILE__, __LINE__, r_, (error), (code), #code, (needle));                    \
  } while (0)

static inline void check_error(const char *file, int line, rodiff_result r, rodiff_error *error, rodiff_result code,
                               const char *code_name, const char *needle) {
  const char *m = rodiff_error_message(error);
  bool ok = r == code && error != NULL && rodiff_error_code(error) == code &&
            (needle == NULL || (m != NULL && strstr(m, needle) != NULL));
  if (!ok) {
    fprintf(stderr, "%s:%d: want %s%s%s%s: got result %d, error object %s with code %d: %s\n", file, line, code_name,
            needle ? " naming \"" : "", needle ? needle : "", needle ? "\"" : "", (int)r, error ? "set" : "NULL",
            (int)rodiff_error_code(error), m ? m : "(no message)");
    check_failures++;
  }
  rodiff_error_free(error);
}

/* Seconds on the monotonic clock. */
static inline double check_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The threads of this process (the entries of /proc/self/task). */
static inline int check_threads(void) {
  DIR *d = opendir("/proc/self/task");
  REQUIRE(d != NULL, "cannot list /proc/self/task");
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* Checks that every thread but the caller's ends within `seconds`: rodiff_client_free lets a
 * client's I/O and walker threads wind down on their own (and valgrind would count the threads
 * still running at exit as possibly lost memory). */
static inline void check_threads_end(double seconds) {
  double deadline = check_now() + seconds;
  while (check_threads() > check_own_threads && check_now() < deadline) {
    struct timespec t = {0, 10 * 1000 * 1000};
    nanosleep(&t, NULL);
  }
  CHECK(check_threads() == check_own_threads, "%d threads still run %.0f s after the last client was freed", check_threads(), seconds);
}

/* Runs `body` on a thread of its own and returns its result, so that what the Rust runtime keeps
 * per thread (its thread handle, a crossbeam-epoch registration) is freed when that thread ends:
 * under valgrind, the main thread's would still be held at exit and counted as possibly lost. */
struct check_thread_args {
  int (*body)(int, char **);
  int argc;
  char **argv;
  int result;
};

static inline void *check_thread_main(void *arg) {
  struct check_thread_args *a = arg;
  a->result = a->body(a->argc, a->argv);
  return NULL;
}

static inline int check_in_thread(int (*body)(int, char **), int argc, char **argv) {
  struct check_thread_args a = {body, argc, argv, 1};
  check_own_threads = 2;
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, check_thread_main, &a) == 0, "pthread_create");
  pthread_join(t, NULL);
  return a.result;
}

static inline const char *check_type_name(rodiff_file_type t) {
  switch (t) {
  case RODIFF_FILE: return "file";
  case RODIFF_DIR: return "dir";
  case RODIFF_SYMLINK: return "symlink";
  case RODIFF_FIFO: return "fifo";
  case RODIFF_SOCKET: return "socket";
  case RODIFF_CHAR_DEVICE: return "char";
  case RODIFF_BLOCK_DEVICE: return "block";
  }
  return "?";
}

/* One change as a line that cli_json.py also makes of `rodiff diff --format json`: every field,
 * the path in hex (its bytes exactly), `-` for what is absent. */
static inline void check_print_change(FILE *f, const rodiff_change *c) {
  fprintf(f, "%c %s ", c->kind, check_type_name(c->file_type));
  for (size_t i = 0; i < c->path_len; i++) fprintf(f, "%02x", c->path[i]);
  if (c->has_metadata)
    fprintf(f, " %o %u %u %llu %lld.%09u", (unsigned)c->mode, (unsigned)c->uid, (unsigned)c->gid,
            (unsigned long long)c->size, (long long)c->mtime_sec, (unsigned)c->mtime_nsec);
  else
    fprintf(f, " - - - - -");
  fprintf(f, " %s %s\n", c->mountpoint ? "mountpoint" : "-", c->container ? c->container : "-");
}

#endif
