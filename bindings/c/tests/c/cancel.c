/*
 * cancel CONTAINER: cancel tokens and deadlines. Against a Docker endpoint that accepts
 * connections and never answers (a socket this test listens on), a deadline gives RODIFF_TIMEOUT
 * and a cancel from another thread RODIFF_CANCELLED, both long before the client's 60 s request
 * timeout; against CONTAINER (thousands of changes), a token cancelled during the scan (from the
 * callback, on rodiff's thread) or before the call ends it with RODIFF_CANCELLED.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"

static char sentinel_storage[1];
#define SENTINEL ((void *)sentinel_storage)

struct canceller {
  const rodiff_cancel *token;
  long after_ms;
};

static void *cancel_later(void *arg) {
  struct canceller *c = arg;
  struct timespec t = {c->after_ms / 1000, (c->after_ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
  rodiff_cancel_cancel(c->token);
  rodiff_cancel_cancel(c->token); /* any number of times */
  return NULL;
}

struct batches {
  const rodiff_cancel *token;
  size_t calls;
};

static int32_t cancel_in_callback(void *userdata, const rodiff_change *changes, size_t len) {
  (void)changes, (void)len;
  struct batches *b = userdata;
  b->calls++;
  rodiff_cancel_cancel(b->token);
  return 0;
}

int main(int argc, char **argv) {
  REQUIRE(argc == 2, "usage: cancel CONTAINER");
  const char *name = argv[1];

  /* A silent endpoint. */
  char dir[] = "/tmp/rodiff-c-cancel.XXXXXX";
  REQUIRE(mkdtemp(dir) != NULL, "mkdtemp");
  struct sockaddr_un addr = {0};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s/silent.sock", dir);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(fd, 64) == 0, "listen on %s", addr.sun_path);
  char host[200];
  snprintf(host, sizeof host, "unix://%s", addr.sun_path);
  rodiff_options o = {0};
  o.docker_host = host;
  o.timeout_ms = 60000;
  rodiff_client *silent = NULL;
  REQUIRE(rodiff_client_new(&o, &silent, NULL) == RODIFF_OK, "rodiff_client_new");

  /* A deadline. */
  rodiff_call call = {0};
  call.deadline_ms = 300;
  rodiff_changes *list = SENTINEL;
  rodiff_error *error = NULL;
  double start = check_now();
  CHECK_ERROR(rodiff_diff(silent, "web", &call, &list, &error), error, RODIFF_TIMEOUT, NULL);
  double took = check_now() - start;
  CHECK(took >= 0.25 && took < 5, "the 300 ms deadline ended the call after %.2f s", took);
  CHECK(list == SENTINEL, "output written on failure");

  /* A cancel from another thread. */
  rodiff_cancel *token = rodiff_cancel_new();
  REQUIRE(token != NULL, "rodiff_cancel_new");
  struct canceller c = {token, 300};
  pthread_t thread;
  REQUIRE(pthread_create(&thread, NULL, cancel_later, &c) == 0, "pthread_create");
  call.deadline_ms = 0;
  call.cancel = token;
  char *text = SENTINEL;
  error = NULL;
  start = check_now();
  CHECK_ERROR(rodiff_plan(silent, "web", &call, RODIFF_PLAN_DOCKER, &text, &error), error, RODIFF_CANCELLED, NULL);
  took = check_now() - start;
  CHECK(took >= 0.25 && took < 5, "the cancel 300 ms in ended the call after %.2f s", took);
  CHECK(text == (char *)SENTINEL, "output written on failure");
  pthread_join(thread, NULL);
  /* A cancelled token stays cancelled: the next call with it ends at once. */
  error = NULL;
  CHECK_ERROR(rodiff_diff(silent, "web", &call, &list, &error), error, RODIFF_CANCELLED, NULL);
  rodiff_cancel_free(token);
  rodiff_client_free(silent);
  close(fd);
  unlink(addr.sun_path);
  rmdir(dir);

  /* A real container: a token cancelled in the first batch ends the scan. */
  rodiff_client *client = check_docker_client(2);
  token = rodiff_cancel_new();
  call.cancel = token;
  struct batches b = {token, 0};
  bool complete = true;
  error = NULL;
  CHECK_ERROR(rodiff_diff_stream(client, name, &call, cancel_in_callback, &b, &complete, &error), error, RODIFF_CANCELLED, NULL);
  CHECK(complete == true, "complete written on failure");
  CHECK(b.calls >= 1 && b.calls <= 3, "%zu batches after the cancel (2 walkers)", b.calls);
  /* Cancelled before the call: nothing is asked. */
  error = NULL;
  CHECK_ERROR(rodiff_diff(client, name, &call, &list, &error), error, RODIFF_CANCELLED, NULL);
  rodiff_cancel_free(token);
  /* A fresh token, never cancelled, and a generous deadline change nothing. */
  token = rodiff_cancel_new();
  call.cancel = token;
  call.deadline_ms = 60000;
  list = NULL;
  rodiff_result r = rodiff_diff(client, name, &call, &list, &error);
  CHECK(r == RODIFF_OK && rodiff_changes_len(list) > 0, "a diff with a token and a deadline: %d %s", (int)r, rodiff_error_message(error));
  rodiff_changes_free(list);
  rodiff_cancel_free(token);
  rodiff_client_free(client);
  check_threads_end(10);
  return check_done();
}
