/*
 * stream_stop CONTAINER: rodiff_diff_stream over a container with thousands of changes (several
 * batches), stopped by the callback's non-zero return: RODIFF_OK, complete false, and the callback
 * never called again; run to the end, every change once.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

struct state {
  pthread_mutex_t lock;
  size_t calls, changes;
  size_t stop_after; /* batches; 0: never stop */
  int32_t answer;    /* what to return to stop */
  int concurrent, max_concurrent;
};

static int32_t on_batch(void *userdata, const rodiff_change *changes, size_t len) {
  struct state *s = userdata;
  pthread_mutex_lock(&s->lock);
  s->calls++;
  s->changes += len;
  if (++s->concurrent > s->max_concurrent) s->max_concurrent = s->concurrent;
  size_t calls = s->calls;
  pthread_mutex_unlock(&s->lock);
  for (size_t i = 0; i < len; i++) CHECK(changes[i].path_len > 0, "an empty path");
  /* Give another walker the chance to call in at the same time (it must not). */
  struct timespec pause = {0, 2 * 1000 * 1000};
  nanosleep(&pause, NULL);
  pthread_mutex_lock(&s->lock);
  s->concurrent--;
  pthread_mutex_unlock(&s->lock);
  return s->stop_after && calls >= s->stop_after ? s->answer : 0;
}

static void run(rodiff_client *client, const char *name, struct state *s, bool *complete) {
  rodiff_error *error = NULL;
  rodiff_result r = rodiff_diff_stream(client, name, NULL, on_batch, s, complete, &error);
  CHECK(r == RODIFF_OK, "rodiff_diff_stream: %d %s", (int)r, rodiff_error_message(error));
  rodiff_error_free(error);
}

static int test_main(int argc, char **argv) {
  REQUIRE(argc == 2, "usage: stream_stop CONTAINER");
  const char *name = argv[1];
  rodiff_client *client = check_docker_client(2);

  rodiff_changes *list = NULL;
  REQUIRE(rodiff_diff(client, name, NULL, &list, NULL) == RODIFF_OK, "rodiff_diff %s", name);
  size_t total = rodiff_changes_len(list);
  rodiff_changes_free(list);

  /* To the end. */
  struct state all = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 1, 0, 0};
  bool complete = false;
  run(client, name, &all, &complete);
  CHECK(complete, "not complete although never stopped");
  CHECK(all.changes == total, "streamed %zu changes, the list has %zu", all.changes, total);
  CHECK(all.calls > 2, "only %zu batches for %zu changes: the stop test would prove nothing", all.calls, total);
  CHECK(all.max_concurrent == 1, "the callback ran %d times at once", all.max_concurrent);

  /* Stopped at the first batch, then at the third with a negative answer. */
  size_t stops[] = {1, 3};
  int32_t answers[] = {1, -7};
  for (int i = 0; i < 2; i++) {
    struct state s = {PTHREAD_MUTEX_INITIALIZER, 0, 0, stops[i], answers[i], 0, 0};
    complete = true;
    run(client, name, &s, &complete);
    CHECK(!complete, "complete after the callback stopped the scan");
    CHECK(s.calls == stops[i], "the callback was called %zu times, it stopped at %zu", s.calls, stops[i]);
    CHECK(s.changes < total, "every change delivered although stopped");
    /* Nothing calls it after the function returned either. */
    struct timespec later = {0, 300 * 1000 * 1000};
    nanosleep(&later, NULL);
    pthread_mutex_lock(&s.lock);
    CHECK(s.calls == stops[i], "the callback was called after rodiff_diff_stream returned");
    pthread_mutex_unlock(&s.lock);
  }

  rodiff_client_free(client);
  check_threads_end(10);
  return check_done();
}

/* On a thread of its own: see check_in_thread. */
int main(int argc, char **argv) { return check_in_thread(test_main, argc, argv); }
