/* threads16: 16 threads share one client: diffs, streams, plans of the small and the 10,000-file
 * container, 10 rounds each; 8 more threads call rodiff_cancel_cancel concurrently on one shared
 * token given to streams (which must then end OK-or-CANCELLED), then free it only after. */
#include "probe.h"

enum { THREADS = 16, ROUNDS = 10 };
static rodiff_client *client;
static size_t ref_small, ref_big;
static rodiff_cancel *shared;
static _Atomic int go_cancel;

static int32_t count(void *ud, const rodiff_change *c, size_t n) { (void)c; *(size_t *)ud += n; return 0; }

static void *worker(void *arg) {
  long id = (long)arg;
  for (int round = 0; round < ROUNDS; round++) {
    rodiff_error *e = NULL;
    rodiff_result r;
    const char *name = (id + round) % 2 ? getenv("PROBE_BIG") : getenv("PROBE_CORPUS");
    size_t want = (id + round) % 2 ? ref_big : ref_small;
    switch ((id + round) % 3) {
    case 0: {
      rodiff_changes *l = NULL;
      r = rodiff_diff(client, name, NULL, &l, &e);
      CHECK(r == RODIFF_OK && rodiff_changes_len(l) == want, "t%ld diff %d %zu/%zu %s", id, r, rodiff_changes_len(l), want, rodiff_error_message(e));
      rodiff_changes_free(l);
      break;
    }
    case 1: {
      size_t n = 0; bool complete = false;
      r = rodiff_diff_stream(client, name, NULL, count, &n, &complete, &e);
      CHECK(r == RODIFF_OK && complete && n == want, "t%ld stream %d %zu/%zu %s", id, r, n, want, rodiff_error_message(e));
      break;
    }
    default: {
      char *p = NULL;
      r = rodiff_plan(client, name, NULL, RODIFF_PLAN_JSON, &p, &e);
      CHECK(r == RODIFF_OK && p, "t%ld plan %d %s", id, r, rodiff_error_message(e));
      rodiff_string_free(p);
    }
    }
    rodiff_error_free(e);
  }
  return NULL;
}

static void *cancel_stream(void *arg) {
  (void)arg;
  rodiff_call call = {0};
  call.cancel = shared;
  size_t n = 0; bool complete = false;
  rodiff_error *e = NULL;
  rodiff_result r = rodiff_diff_stream(client, getenv("PROBE_BIG"), &call, count, &n, &complete, &e);
  CHECK(r == RODIFF_OK || r == RODIFF_CANCELLED, "cancelled stream: %d %s", r, rodiff_error_message(e));
  rodiff_error_free(e);
  return NULL;
}
static void *canceller(void *arg) {
  (void)arg;
  while (!go_cancel) ;
  for (int i = 0; i < 1000; i++) rodiff_cancel_cancel(shared);
  return NULL;
}

int main(void) {
  client = check_docker_client(0);
  rodiff_changes *l = NULL;
  rodiff_error *e = NULL;
  REQUIRE(rodiff_diff(client, getenv("PROBE_CORPUS"), NULL, &l, &e) == RODIFF_OK, "ref");
  ref_small = rodiff_changes_len(l); rodiff_changes_free(l);
  REQUIRE(rodiff_diff(client, getenv("PROBE_BIG"), NULL, &l, &e) == RODIFF_OK, "ref");
  ref_big = rodiff_changes_len(l); rodiff_changes_free(l);
  shared = rodiff_cancel_new();
  probe_watchdog(110, "threads16");
  pthread_t t[THREADS + 4 + 8];
  for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
  for (int i = 0; i < 4; i++) pthread_create(&t[THREADS + i], NULL, cancel_stream, NULL);
  for (int i = 0; i < 8; i++) pthread_create(&t[THREADS + 4 + i], NULL, canceller, NULL);
  go_cancel = 1;
  for (int i = 0; i < THREADS + 12; i++) pthread_join(t[i], NULL);
  alarm(0);
  rodiff_cancel_free(shared);
  rodiff_client_free(client);
  return check_done();
}
