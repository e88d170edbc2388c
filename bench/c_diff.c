/*
 * bench/c_diff.c: `rodiff diff` through the C ABI, for bench/bench.py (built there with -O2
 * against target/release/librodiff.a). Prints `KIND PATH` per change, as the CLI's docker format
 * does: as the walk finds them (stream, the default: what the CLI does) or from the sorted list
 * (list), both without metadata (paths_only, which the docker format does not need either); or
 * streamed with metadata (stream-metadata: the work of `rodiff diff --format jsonl`).
 *
 *   c_diff CONTAINER [stream|list|stream-metadata]      (DOCKER_HOST passed to rodiff_options)
 */
#include <rodiff.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes a batch as lines with one fwrite (stdio's lock once per batch, not per character). */
static int32_t print_batch(void *out, const rodiff_change *changes, size_t len) {
  static char *buffer;
  static size_t capacity;
  size_t need = 0;
  for (size_t i = 0; i < len; i++) need += changes[i].path_len + 3;
  if (need > capacity) {
    free(buffer);
    capacity = need * 2;
    buffer = malloc(capacity);
    if (!buffer) return 1;
  }
  char *p = buffer;
  for (size_t i = 0; i < len; i++) {
    *p++ = changes[i].kind;
    *p++ = ' ';
    memcpy(p, changes[i].path, changes[i].path_len);
    p += changes[i].path_len;
    *p++ = '\n';
  }
  fwrite(buffer, 1, (size_t)(p - buffer), out);
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc == 3 ? argv[2] : "stream";
  if (argc < 2 || argc > 3 || (strcmp(mode, "stream") && strcmp(mode, "list") && strcmp(mode, "stream-metadata"))) {
    fprintf(stderr, "usage: c_diff CONTAINER [stream|list|stream-metadata]\n");
    return 2;
  }
  rodiff_call call = {.paths_only = strcmp(mode, "stream-metadata") != 0};
  rodiff_options options = {.docker_host = getenv("DOCKER_HOST")};
  rodiff_client *client = NULL;
  rodiff_error *error = NULL;
  rodiff_result r = rodiff_client_new(&options, &client, &error);
  if (r == RODIFF_OK && strcmp(mode, "list") == 0) {
    rodiff_changes *list = NULL;
    r = rodiff_diff(client, argv[1], &call, &list, &error);
    for (size_t i = 0; r == RODIFF_OK && i < rodiff_changes_len(list); i++)
      print_batch(stdout, rodiff_changes_get(list, i), 1);
    rodiff_changes_free(list);
  } else if (r == RODIFF_OK) {
    r = rodiff_diff_stream(client, argv[1], &call, print_batch, stdout, NULL, &error);
  }
  if (r != RODIFF_OK) fprintf(stderr, "c_diff: %s\n", rodiff_error_message(error));
  rodiff_error_free(error);
  rodiff_client_free(client);
  return r == RODIFF_OK ? 0 : 1;
}
