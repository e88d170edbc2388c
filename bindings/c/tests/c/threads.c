/*
 * threads CONTAINER: one client shared by several threads (rodiff.h: "A rodiff_client may be
 * shared by any number of threads"): lists, streams and plans at once, each the same as the one
 * the main thread got alone; a list read from another thread than the one that made it.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

enum { THREADS = 6, ROUNDS = 4 };

static const rodiff_client *client;
static const char *name;
static rodiff_changes *reference;
static char *reference_plan;

static bool same_change(const rodiff_change *a, const rodiff_change *b) {
  return a->path_len == b->path_len && memcmp(a->path, b->path, a->path_len) == 0 && a->kind == b->kind &&
         a->file_type == b->file_type && a->mode == b->mode && a->uid == b->uid && a->gid == b->gid &&
         a->size == b->size && a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec &&
         a->mountpoint == b->mountpoint;
}

static void check_list(const rodiff_changes *list) {
  size_t n = rodiff_changes_len(list);
  CHECK(n == rodiff_changes_len(reference), "%zu changes, alone %zu", n, rodiff_changes_len(reference));
  for (size_t i = 0; i < n && i < rodiff_changes_len(reference); i++)
    CHECK(same_change(rodiff_changes_get(list, i), rodiff_changes_get(reference, i)), "change %zu differs", i);
}

static int32_t count(void *userdata, const rodiff_change *changes, size_t len) {
  (void)changes;
  *(size_t *)userdata += len;
  return 0;
}

static void *worker(void *arg) {
  long id = (long)arg;
  for (int round = 0; round < ROUNDS; round++) {
    rodiff_error *error = NULL;
    rodiff_result r;
    switch ((id + round) % 3) {
    case 0: {
      rodiff_changes *list = NULL;
      r = rodiff_diff(client, name, NULL, &list, &error);
      CHECK(r == RODIFF_OK, "thread %ld: rodiff_diff %d %s", id, (int)r, rodiff_error_message(error));
      check_list(list);
      rodiff_changes_free(list);
      break;
    }
    case 1: {
      size_t n = 0;
      bool complete = false;
      r = rodiff_diff_stream(client, name, NULL, count, &n, &complete, &error);
      CHECK(r == RODIFF_OK && complete, "thread %ld: rodiff_diff_stream %d %s", id, (int)r, rodiff_error_message(error));
      CHECK(n == rodiff_changes_len(reference), "thread %ld: streamed %zu, alone %zu", id, n, rodiff_changes_len(reference));
      break;
    }
    default: {
      char *plan = NULL;
      r = rodiff_plan(client, name, NULL, RODIFF_PLAN_JSON, &plan, &error);
      CHECK(r == RODIFF_OK && plan && strcmp(plan, reference_plan) == 0, "thread %ld: rodiff_plan %d %s", id, (int)r,
            rodiff_error_message(error));
      rodiff_string_free(plan);
    }
    }
    rodiff_error_free(error);
  }
  return NULL;
}

static void *read_reference(void *arg) {
  (void)arg;
  check_list(reference);
  return NULL;
}

int main(int argc, char **argv) {
  REQUIRE(argc == 2, "usage: threads CONTAINER");
  name = argv[1];
  rodiff_client *c = check_docker_client(2);
  client = c;
  REQUIRE(rodiff_diff(client, name, NULL, &reference, NULL) == RODIFF_OK, "rodiff_diff %s", name);
  REQUIRE(rodiff_plan(client, name, NULL, RODIFF_PLAN_JSON, &reference_plan, NULL) == RODIFF_OK, "rodiff_plan %s", name);

  pthread_t threads[THREADS + 1];
  for (long i = 0; i < THREADS; i++) REQUIRE(pthread_create(&threads[i], NULL, worker, (void *)i) == 0, "pthread_create");
  REQUIRE(pthread_create(&threads[THREADS], NULL, read_reference, NULL) == 0, "pthread_create");
  for (int i = 0; i <= THREADS; i++) pthread_join(threads[i], NULL);

  rodiff_string_free(reference_plan);
  rodiff_changes_free(reference);
  rodiff_client_free(c);
  check_threads_end(10);
  return check_done();
}
