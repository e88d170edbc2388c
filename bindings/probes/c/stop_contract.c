/* stop_contract: a callback returning a non-zero value (1, -1, INT_MIN, INT_MAX) is never called
 * again, the call returns RODIFF_OK with complete=false; the 10,000-file container is streamed
 * from several threads' batches. Also: `complete` may be NULL, `error` may be NULL. */
#include "probe.h"

static _Atomic int after_stop, calls, stopped;
static int32_t value;
static int32_t cb(void *ud, const rodiff_change *c, size_t n) {
  (void)ud; (void)c; (void)n;
  calls++;
  if (stopped) { after_stop++; return value; }
  stopped = 1;
  return value;
}

int main(void) {
  rodiff_client *client = check_docker_client(0);
  int32_t values[] = {1, -1, INT32_MIN, INT32_MAX};
  for (int i = 0; i < 4; i++) {
    value = values[i];
    after_stop = calls = stopped = 0;
    bool complete = true;
    rodiff_error *e = NULL;
    rodiff_result r = rodiff_diff_stream(client, getenv("PROBE_BIG"), NULL, cb, NULL, &complete, &e);
    CHECK(r == RODIFF_OK && !complete, "value %d: result %d complete %d: %s", value, r, complete, rodiff_error_message(e));
    CHECK(after_stop == 0, "value %d: called %d more times after returning non-zero", value, after_stop);
    CHECK(e == NULL, "error set on success");
    rodiff_error_free(e);
  }
  /* complete and error NULL */
  after_stop = calls = stopped = 0; value = 1;
  rodiff_result r = rodiff_diff_stream(client, getenv("PROBE_BIG"), NULL, cb, NULL, NULL, NULL);
  CHECK(r == RODIFF_OK, "NULL complete/error: %d", r);
  rodiff_client_free(client);
  return check_done();
}
