/* free_while_running: thread A diffs the 10,000-file container while the main thread frees the
 * client after 20 ms (forbidden by the header: "No call may be using it"). Is the misuse
 * detected, or silent use-after-free? Exit 0 only if detected cleanly. */
#include "probe.h"

static rodiff_client *client;
static void *worker(void *arg) {
  (void)arg;
  rodiff_changes *list = NULL;
  rodiff_error *e = NULL;
  rodiff_result r = rodiff_diff(client, getenv("PROBE_BIG"), NULL, &list, &e);
  fprintf(stderr, "worker: rodiff_diff returned %d, %zu changes: %s\n", r, rodiff_changes_len(list), rodiff_error_message(e));
  rodiff_changes_free(list);
  rodiff_error_free(e);
  return NULL;
}

int main(void) {
  client = check_docker_client(2);
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  struct timespec ts = {0, 20 * 1000 * 1000};
  nanosleep(&ts, NULL);
  fprintf(stderr, "main: freeing the client while the worker's diff runs\n");
  rodiff_client_free(client);
  probe_watchdog(60, "free_while_running");
  pthread_join(t, NULL);
  alarm(0);
  fprintf(stderr, "no detection\n");
  return 1;
}
