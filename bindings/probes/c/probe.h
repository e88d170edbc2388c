/* probe.h: shared by the probes (check.h from the C tests, plus a watchdog). */
#define _GNU_SOURCE
#include <signal.h>
#include <unistd.h>
#include <limits.h>
#include "check.h"

static const char *probe_watch_what = "probe";
static void probe_alarm(int sig) {
  (void)sig;
  static const char m[] = "\nWATCHDOG: the call did not return in time (deadlock/hang)\n";
  (void)!write(2, m, sizeof m - 1);
  _exit(3);
}
/* Exits 3 with a message when not disarmed (alarm(0)) within `seconds`. */
static inline void probe_watchdog(unsigned seconds, const char *what) {
  probe_watch_what = what;
  signal(SIGALRM, probe_alarm);
  alarm(seconds);
}
