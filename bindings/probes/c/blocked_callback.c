/* blocked_callback: a callback that blocks (here for 3 s) while the call is cancelled
 * (rodiff_cancel_cancel from another thread after 100 ms) or its deadline (200 ms) passes: the call
 * returns only when the callback does (a C call cannot be pre-empted), then promptly with
 * RODIFF_CANCELLED / RODIFF_TIMEOUT and the callback is not called again. Exit non-zero if the
 * call returns before the callback, takes > 1 s after it, or calls it again. */
#include "probe.h"

static _Atomic int calls, released;
static int32_t cb(void *ud, const rodiff_change *c, size_t n) {
  (void)ud; (void)c; (void)n;
  if (calls++ == 0) { sleep(3); released = 1; }
  return 0;
}
static rodiff_cancel *tok;
/* Cancels 100 ms after the callback was entered (a loaded machine may take longer than that to
 * deliver the first batch: the cancel must find the callback blocked). */
static void *canceller(void *a) {
  (void)a;
  struct timespec t = {0, 100000000}, poll = {0, 1000000};
  while (calls == 0) nanosleep(&poll, NULL);
  nanosleep(&t, NULL);
  rodiff_cancel_cancel(tok);
  return NULL;
}

int main(void) {
  rodiff_client *client = check_docker_client(0);
  for (int mode = 0; mode < 2; mode++) {
    calls = released = 0;
    tok = rodiff_cancel_new();
    rodiff_call call = {0};
    pthread_t t;
    if (mode == 0) { call.cancel = tok; pthread_create(&t, NULL, canceller, NULL); }
    else call.deadline_ms = 200;
    double t0 = check_now();
    bool complete = true;
    rodiff_error *e = NULL;
    probe_watchdog(30, "blocked_callback");
    rodiff_result r = rodiff_diff_stream(client, getenv("PROBE_BIG"), &call, cb, NULL, &complete, &e);
    alarm(0);
    double dt = check_now() - t0;
    int after = calls;
    fprintf(stderr, "%s: %d after %.2f s, %d callback calls, complete %d: %s\n", mode ? "deadline" : "cancel", r, dt, after, complete, rodiff_error_message(e));
    CHECK(r == (mode ? RODIFF_TIMEOUT : RODIFF_CANCELLED), "result %d", r);
    /* The deadline may pass before the first batch on a loaded machine: then no call at all. */
    if (mode == 0 || after > 0) {
      CHECK(released, "returned before the callback did");
      CHECK(dt < 4.0, "took %.2f s (> 1 s after the callback returned)", dt);
      CHECK(after == 1, "callback called %d times (again after the cancel)", after);
    } else {
      CHECK(dt < 1.0, "took %.2f s to time out before any callback", dt);
    }
    rodiff_error_free(e);
    if (mode == 0) pthread_join(t, NULL);
    rodiff_cancel_free(tok);
  }
  rodiff_client_free(client);
  return check_done();
}
