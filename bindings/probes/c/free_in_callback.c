/* free_in_callback: rodiff_client_free called from inside the stream callback (the header forbids
 * freeing a client a call is using). Is the misuse detected (an error, a clean abort) or is it
 * silent memory corruption? Exit 0 only if rodiff detects it. Under ASan a use-after-free report
 * means: undetected by rodiff, memory-unsafe. */
#include "probe.h"

static rodiff_client *client;
static int calls;
static int32_t cb(void *ud, const rodiff_change *c, size_t n) {
  (void)ud; (void)c; (void)n;
  if (calls++ == 0) {
    fprintf(stderr, "freeing the client inside the callback\n");
    rodiff_client_free(client);
  }
  return 0;
}

int main(void) {
  client = check_docker_client(2);
  probe_watchdog(60, "free_in_callback");
  bool complete = false;
  rodiff_error *e = NULL;
  rodiff_result r = rodiff_diff_stream(client, getenv("PROBE_BIG"), NULL, cb, NULL, &complete, &e);
  alarm(0);
  fprintf(stderr, "rodiff_diff_stream returned %d complete=%d after %d callbacks: %s\n", r, complete, calls, rodiff_error_message(e));
  rodiff_error_free(e);
  fprintf(stderr, "no detection: the call went on with a freed client\n");
  return 1;
}
