/* big: the 100,000-file container through rodiff_diff and rodiff_diff_stream: counts agree, and
 * memory. Prints peak RSS after the list (ru_maxrss) and per change; fails if the list costs more
 * than 1 KiB per change over the baseline. */
#include "probe.h"
#include <sys/resource.h>

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256]; long v = -1;
  while (fgets(line, sizeof line, f)) if (sscanf(line, "VmHWM: %ld", &v) == 1) break;
  fclose(f);
  return v;
}
static int32_t count(void *ud, const rodiff_change *c, size_t n) { (void)c; *(size_t *)ud += n; return 0; }

int main(void) {
  const char *huge = getenv("PROBE_HUGE");
  rodiff_client *client = check_docker_client(0);
  size_t n = 0; bool complete = false;
  rodiff_error *e = NULL;
  double t0 = check_now();
  rodiff_result r = rodiff_diff_stream(client, huge, NULL, count, &n, &complete, &e);
  double ts = check_now() - t0;
  long base = rss_kb();
  CHECK(r == RODIFF_OK && complete, "stream %d %s", r, rodiff_error_message(e));
  fprintf(stderr, "stream: %zu changes in %.2f s, peak RSS %ld KiB\n", n, ts, base);
  rodiff_changes *l = NULL;
  t0 = check_now();
  r = rodiff_diff(client, huge, NULL, &l, &e);
  double td = check_now() - t0;
  long peak = rss_kb();
  size_t len = rodiff_changes_len(l);
  CHECK(r == RODIFF_OK, "diff %d %s", r, rodiff_error_message(e));
  CHECK(len == n, "list %zu, stream %zu", len, n);
  fprintf(stderr, "list: %zu changes in %.2f s, peak RSS %ld KiB (+%ld KiB, %.0f bytes/change)\n", len, td, peak,
          peak - base, len ? (peak - base) * 1024.0 / (double)len : 0.0);
  CHECK(len == 0 || (peak - base) * 1024 / (long)len < 1024, "more than 1 KiB per change");
  rodiff_changes_free(l);
  rodiff_client_free(client);
  return check_done();
}
