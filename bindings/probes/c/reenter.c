/* reenter: a stream callback that calls back into the same client (rodiff_diff, rodiff_plan)
 * must work or fail cleanly, never deadlock: with 1 walker thread and with the default. */
#include "probe.h"

static const rodiff_client *client;
static int nested_ok, nested_fail, calls;

static int32_t cb(void *ud, const rodiff_change *c, size_t n) {
  (void)c; (void)n; (void)ud;
  if (calls++ >= 3) return 0;
  rodiff_changes *list = NULL;
  rodiff_error *e = NULL;
  rodiff_result r = rodiff_diff(client, getenv("PROBE_CORPUS"), NULL, &list, &e);
  if (r == RODIFF_OK) nested_ok++; else { nested_fail++; fprintf(stderr, "nested diff: %d %s\n", r, rodiff_error_message(e)); }
  rodiff_changes_free(list);
  rodiff_error_free(e);
  char *plan = NULL;
  r = rodiff_plan(client, getenv("PROBE_CORPUS"), NULL, RODIFF_PLAN_JSON, &plan, &e);
  if (r == RODIFF_OK) nested_ok++; else { nested_fail++; fprintf(stderr, "nested plan: %d %s\n", r, rodiff_error_message(e)); }
  rodiff_string_free(plan);
  rodiff_error_free(e);
  return 0;
}

int main(void) {
  uint32_t walkers[] = {1, 2, 0};
  for (int i = 0; i < 3; i++) {
    rodiff_client *c = check_docker_client(walkers[i]);
    client = c;
    calls = nested_ok = nested_fail = 0;
    probe_watchdog(60, "reenter");
    bool complete = false;
    rodiff_error *e = NULL;
    rodiff_result r = rodiff_diff_stream(c, getenv("PROBE_BIG"), NULL, cb, NULL, &complete, &e);
    alarm(0);
    CHECK(r == RODIFF_OK && complete, "walkers %u: stream %d %s", walkers[i], r, rodiff_error_message(e));
    CHECK(nested_fail == 0, "walkers %u: %d nested calls failed", walkers[i], nested_fail);
    fprintf(stderr, "walkers %u: %d callbacks, %d nested ok\n", walkers[i], calls, nested_ok);
    rodiff_error_free(e);
    rodiff_client_free(c);
  }
  return check_done();
}
