/* names: hostile container names must not reach another container or another API endpoint.
 * Each name below is not the name of any container, so rodiff_diff must fail (not found,
 * invalid argument...) - never succeed with some other container's changes; a 1 MiB name must
 * fail cleanly. Prints what each gave. */
#include "probe.h"

int main(void) {
  const char *corpus = getenv("PROBE_CORPUS");
  rodiff_client *client = check_docker_client(0);
  char buf[8][512];
  snprintf(buf[0], sizeof buf[0], "x/../%s", corpus);
  snprintf(buf[1], sizeof buf[1], "../containers/%s", corpus);
  snprintf(buf[2], sizeof buf[2], "%s?x=1", "nope");
  snprintf(buf[3], sizeof buf[3], "%s/json?", corpus);
  snprintf(buf[4], sizeof buf[4], "%s#frag", corpus);
  snprintf(buf[5], sizeof buf[5], "%%2e%%2e/containers/%s", corpus);
  snprintf(buf[6], sizeof buf[6], "%s%%00", corpus);
  snprintf(buf[7], sizeof buf[7], "%s\r\nX-Injected: 1", corpus);
  for (int i = 0; i < 8; i++) {
    rodiff_changes *list = NULL;
    rodiff_error *e = NULL;
    rodiff_result r = rodiff_diff(client, buf[i], NULL, &list, &e);
    fprintf(stderr, "name %d %-40.40s -> %d (%zu changes) %s\n", i, buf[i], r, rodiff_changes_len(list), rodiff_error_message(e));
    CHECK(r != RODIFF_OK, "name \"%s\" is not a container but gave %zu changes (of %s?)", buf[i], rodiff_changes_len(list), corpus);
    CHECK(r != RODIFF_PANIC, "panic on %s", buf[i]);
    rodiff_changes_free(list);
    rodiff_error_free(e);
  }
  size_t n = 1 << 20;
  char *huge = malloc(n + 1);
  memset(huge, 'a', n);
  huge[n] = 0;
  double t0 = check_now();
  rodiff_changes *list = NULL;
  rodiff_error *e = NULL;
  probe_watchdog(60, "huge name");
  rodiff_result r = rodiff_diff(client, huge, NULL, &list, &e);
  alarm(0);
  const char *m = rodiff_error_message(e);
  fprintf(stderr, "1 MiB name -> %d in %.2f s, message %zu bytes: %.100s\n", r, check_now() - t0, m ? strlen(m) : 0, m ? m : "");
  CHECK(r == RODIFF_CONTAINER_NOT_FOUND || r == RODIFF_INVALID_ARGUMENT, "1 MiB name: %d", r);
  rodiff_error_free(e);
  free(huge);
  rodiff_client_free(client);
  return check_done();
}
