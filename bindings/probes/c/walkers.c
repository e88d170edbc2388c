/* walkers: rodiff_options.walkers = UINT32_MAX (any uint32_t is accepted by the type): the client
 * must be refused (RODIFF_INVALID_ARGUMENT) or made with a sane number of threads, quickly; not
 * hang, crash or spawn tens of thousands of threads. Prints threads and time. */
#include "probe.h"

int main(void) {
  uint32_t values[] = {100000, UINT32_MAX};
  for (int i = 0; i < 2; i++) {
    rodiff_options o = {0};
    o.docker_host = check_env("DOCKER_HOST");
    o.walkers = values[i];
    rodiff_client *c = NULL;
    rodiff_error *e = NULL;
    double t0 = check_now();
    probe_watchdog(100, "walkers");
    rodiff_result r = rodiff_client_new(&o, &c, &e);
    alarm(0);
    int threads = check_threads();
    fprintf(stderr, "walkers %u: result %d in %.2f s, %d threads: %s\n", values[i], r, check_now() - t0, threads, rodiff_error_message(e));
    CHECK(r != RODIFF_PANIC, "panic");
    CHECK(r != RODIFF_OK || threads < 1100, "%d threads made for walkers=%u", threads, values[i]);
    CHECK(check_now() - t0 < 5, "walkers=%u took %.1f s to be refused", values[i], check_now() - t0);
    rodiff_error_free(e);
    rodiff_client_free(c);
    struct timespec ts = {2, 0};
    nanosleep(&ts, NULL);
    fprintf(stderr, "  2 s later: %d threads\n", check_threads());
    CHECK(check_threads() < 10, "%d threads still run 2 s after a failed rodiff_client_new", check_threads());
  }
  return check_done();
}
