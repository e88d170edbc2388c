/*
 * cli_parity CONTAINER OUTDIR: what the C ABI says about CONTAINER, written for run.sh to compare
 * with the CLI's output:
 *   OUTDIR/list.txt      rodiff_diff, in the list's order (the CLI's json is sorted the same way)
 *                        (and with paths_only, checked here: the same without metadata)
 *   OUTDIR/stream.txt    rodiff_diff_stream run to the end, in delivery order
 *   OUTDIR/plan-F.txt    rodiff_plan in each format F (docker, compose, k8s, json)
 * and checks here what the CLI cannot tell: list access, batch delivery, verify.
 */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

struct stream_state {
  FILE *out;
  size_t calls;
  size_t changes;
};

static int32_t on_batch(void *userdata, const rodiff_change *changes, size_t len) {
  struct stream_state *s = userdata;
  s->calls++;
  s->changes += len;
  CHECK(len > 0 && changes != NULL, "an empty batch (%zu)", len);
  for (size_t i = 0; i < len; i++) check_print_change(s->out, &changes[i]);
  return 0;
}

static FILE *open_out(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  REQUIRE(f != NULL, "cannot write %s", path);
  return f;
}

int main(int argc, char **argv) {
  REQUIRE(argc == 3, "usage: cli_parity CONTAINER OUTDIR");
  const char *name = argv[1], *dir = argv[2];
  rodiff_client *client = check_docker_client(0);

  /* The list. */
  rodiff_changes *list = NULL;
  rodiff_error *error = (rodiff_error *)&error; /* set to NULL on success */
  rodiff_result r = rodiff_diff(client, name, NULL, &list, &error);
  REQUIRE(r == RODIFF_OK && list != NULL, "rodiff_diff %s: %d %s", name, (int)r, rodiff_error_message(error));
  CHECK(error == NULL, "*error is not NULL after success");
  size_t n = rodiff_changes_len(list);
  CHECK(n > 0, "no changes in %s", name);
  FILE *f = open_out(dir, "list.txt");
  for (size_t i = 0; i < n; i++) {
    const rodiff_change *c = rodiff_changes_get(list, i);
    REQUIRE(c != NULL, "rodiff_changes_get(%zu) of %zu is NULL", i, n);
    CHECK(c->has_metadata || c->kind == 'D', "no metadata for a change that is not a deletion");
    CHECK(c->container == NULL, "a container tag outside a pod");
    CHECK(c->path_len > 0 && c->path[0] == '/', "a path that is not absolute");
    check_print_change(f, c);
  }
  fclose(f);
  CHECK(rodiff_changes_get(list, n) == NULL, "rodiff_changes_get past the end is not NULL");
  CHECK(rodiff_changes_get(NULL, 0) == NULL && rodiff_changes_len(NULL) == 0, "NULL list");

  /* paths_only: the same changes in the same order, without metadata. */
  rodiff_call paths_only = {0};
  paths_only.paths_only = true;
  rodiff_changes *bare = NULL;
  r = rodiff_diff(client, name, &paths_only, &bare, &error);
  REQUIRE(r == RODIFF_OK, "rodiff_diff paths_only: %d %s", (int)r, rodiff_error_message(error));
  CHECK(rodiff_changes_len(bare) == n, "paths_only: %zu changes, with metadata %zu", rodiff_changes_len(bare), n);
  for (size_t i = 0; i < n && i < rodiff_changes_len(bare); i++) {
    const rodiff_change *a = rodiff_changes_get(list, i), *b = rodiff_changes_get(bare, i);
    CHECK(a->path_len == b->path_len && memcmp(a->path, b->path, a->path_len) == 0 && a->kind == b->kind &&
              a->file_type == b->file_type && a->mountpoint == b->mountpoint,
          "paths_only: change %zu differs", i);
    CHECK(!b->has_metadata && b->mode == 0 && b->size == 0 && b->mtime_sec == 0, "paths_only: change %zu has metadata", i);
  }
  rodiff_changes_free(bare);
  rodiff_changes_free(list);

  /* The stream. */
  struct stream_state s = {open_out(dir, "stream.txt"), 0, 0};
  bool complete = false;
  r = rodiff_diff_stream(client, name, NULL, on_batch, &s, &complete, &error);
  fclose(s.out);
  CHECK(r == RODIFF_OK, "rodiff_diff_stream: %d %s", (int)r, rodiff_error_message(error));
  CHECK(complete, "a stream that was not stopped is not complete");
  CHECK(s.changes == n, "the stream delivered %zu changes, the list has %zu", s.changes, n);
  /* complete may be NULL; paths_only streams the same number of changes. */
  s.out = fopen("/dev/null", "w");
  s.changes = 0;
  r = rodiff_diff_stream(client, name, &paths_only, on_batch, &s, NULL, NULL);
  fclose(s.out);
  CHECK(r == RODIFF_OK && s.changes == n, "rodiff_diff_stream paths_only, complete NULL: %d, %zu changes", (int)r, s.changes);

  /* The plan in each format. */
  static const struct { rodiff_plan_format format; const char *file; } formats[] = {
      {RODIFF_PLAN_DOCKER, "plan-docker.txt"},
      {RODIFF_PLAN_COMPOSE, "plan-compose.txt"},
      {RODIFF_PLAN_K8S, "plan-k8s.txt"},
      {RODIFF_PLAN_JSON, "plan-json.txt"},
  };
  for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
    char *text = NULL;
    r = rodiff_plan(client, name, NULL, formats[i].format, &text, &error);
    REQUIRE(r == RODIFF_OK && text != NULL, "rodiff_plan %s: %d %s", formats[i].file, (int)r, rodiff_error_message(error));
    f = open_out(dir, formats[i].file);
    fputs(text, f);
    fclose(f);
    rodiff_string_free(text);
  }

  /* Verify: the plan holds for a container that only sleeps. */
  bool passed = false;
  char *report = NULL;
  r = rodiff_verify(client, name, "true", 300, NULL, &passed, &report, &error);
  CHECK(r == RODIFF_OK, "rodiff_verify: %d %s", (int)r, rodiff_error_message(error));
  if (r == RODIFF_OK) {
    CHECK(passed, "verify did not pass: %s", report ? report : "(no report)");
    CHECK(report != NULL && report[0] == '{', "the verify report is not JSON: %s", report ? report : "(null)");
  }
  rodiff_string_free(report);
  passed = false;
  r = rodiff_verify(client, name, NULL, 0, NULL, &passed, NULL, &error); /* no probe, no report */
  CHECK(r == RODIFF_OK && passed, "rodiff_verify without probe or report: %d %s", (int)r, rodiff_error_message(error));
  rodiff_error_free(error);

  rodiff_client_free(client);
  check_threads_end(10);
  return check_done();
}
