#include <rodiff.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  rodiff_options options = {.docker_host = getenv("DOCKER_HOST")}; /* NULL: the default socket */
  rodiff_client *client = NULL;
  rodiff_changes *changes = NULL;
  rodiff_error *error = NULL;
  if (argc != 2 || rodiff_client_new(&options, &client, &error) != RODIFF_OK ||
      rodiff_diff(client, argv[1], NULL, &changes, &error) != RODIFF_OK) {
    fprintf(stderr, "diff: %s\n", error ? rodiff_error_message(error) : "usage: diff CONTAINER");
    return 1;
  }
  for (size_t i = 0; i < rodiff_changes_len(changes); i++) {
    const rodiff_change *c = rodiff_changes_get(changes, i);
    printf("%c %.*s\n", c->kind, (int)c->path_len, (const char *)c->path);
  }
  rodiff_changes_free(changes);
  rodiff_client_free(client);
  return 0;
}
