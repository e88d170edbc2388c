/*
 * errors CONTAINER: every error path of rodiff.h, and that outputs are untouched on failure.
 * CONTAINER is a running Docker container of the sandbox (for the calls that get past it).
 */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#include "check.h"

/* Out-parameters start as these sentinels and must still hold them after a failure. */
static char sentinel_storage[1];
#define SENTINEL ((void *)sentinel_storage)

static int32_t never(void *userdata, const rodiff_change *changes, size_t len) {
  (void)userdata, (void)changes, (void)len;
  CHECK(0, "the callback was called by a failing diff");
  return 1;
}

/* Runs all four container calls with (container, call) and checks each fails with `code` naming
 * `needle`, its outputs untouched. */
static void all_fail(const rodiff_client *client, const char *container, const rodiff_call *call,
                     rodiff_result code, const char *needle) {
  rodiff_changes *list = SENTINEL;
  rodiff_error *error = NULL;
  CHECK_ERROR(rodiff_diff(client, container, call, &list, &error), error, code, needle);
  CHECK(list == SENTINEL, "rodiff_diff wrote its output on failure");

  bool complete = true;
  error = NULL;
  CHECK_ERROR(rodiff_diff_stream(client, container, call, never, NULL, &complete, &error), error, code, needle);
  CHECK(complete == true, "rodiff_diff_stream wrote complete on failure");

  char *text = SENTINEL;
  error = NULL;
  CHECK_ERROR(rodiff_plan(client, container, call, RODIFF_PLAN_JSON, &text, &error), error, code, needle);
  CHECK(text == (char *)SENTINEL, "rodiff_plan wrote its output on failure");

  bool passed = true;
  char *report = SENTINEL;
  error = NULL;
  CHECK_ERROR(rodiff_verify(client, container, "true", 0, call, &passed, &report, &error), error, code, needle);
  CHECK(passed == true && report == (char *)SENTINEL, "rodiff_verify wrote its outputs on failure");
}

static rodiff_client *client_for(rodiff_options *o) {
  rodiff_client *client = NULL;
  rodiff_error *error = NULL;
  rodiff_result r = rodiff_client_new(o, &client, &error);
  REQUIRE(r == RODIFF_OK, "rodiff_client_new: %d %s", (int)r, rodiff_error_message(error));
  return client;
}

static int test_main(int argc, char **argv) {
  REQUIRE(argc == 2, "usage: errors CONTAINER");
  const char *name = argv[1];

  /* The version. */
  char version[64];
  snprintf(version, sizeof version, "%d.%d.%d", RODIFF_VERSION_MAJOR, RODIFF_VERSION_MINOR, RODIFF_VERSION_PATCH);
  CHECK(strcmp(rodiff_version(), version) == 0, "rodiff_version() %s, macros %s", rodiff_version(), version);

  rodiff_client *client = check_docker_client(0);

  /* An unknown container: the message names it. */
  char unknown[128];
  snprintf(unknown, sizeof unknown, "rodiff-c-no-such-container-%ld", (long)getpid());
  all_fail(client, unknown, NULL, RODIFF_CONTAINER_NOT_FOUND, unknown);

  /* A dead endpoint, Docker and containerd: the message names the socket. A client connects on
   * first use, so making it succeeds. */
  rodiff_options dead = {0};
  dead.docker_host = "unix:///nonexistent/rodiff-c-test.sock";
  rodiff_client *dead_docker = client_for(&dead);
  all_fail(dead_docker, name, NULL, RODIFF_RUNTIME_UNAVAILABLE, "unix:///nonexistent/rodiff-c-test.sock");
  rodiff_client_free(dead_docker);
  dead.runtime = RODIFF_RUNTIME_CONTAINERD;
  dead.containerd_address = "/nonexistent/rodiff-c-containerd.sock";
  rodiff_client *dead_ctrd = client_for(&dead);
  rodiff_changes *list = SENTINEL;
  rodiff_error *error = NULL;
  CHECK_ERROR(rodiff_diff(dead_ctrd, name, NULL, &list, &error), error, RODIFF_RUNTIME_UNAVAILABLE,
              "/nonexistent/rodiff-c-containerd.sock");
  CHECK(list == SENTINEL, "output written on failure");
  rodiff_client_free(dead_ctrd);

  /* NULL arguments: each named. */
  rodiff_client *out_client = SENTINEL;
  error = NULL;
  CHECK_ERROR(rodiff_client_new(NULL, NULL, &error), error, RODIFF_NULL_ARGUMENT, "out");
  rodiff_changes *changes = SENTINEL;
  char *text = SENTINEL;
  bool flag = true;
  error = NULL;
  CHECK_ERROR(rodiff_diff(NULL, name, NULL, &changes, &error), error, RODIFF_NULL_ARGUMENT, "client");
  error = NULL;
  CHECK_ERROR(rodiff_diff(client, NULL, NULL, &changes, &error), error, RODIFF_NULL_ARGUMENT, "container");
  error = NULL;
  CHECK_ERROR(rodiff_diff(client, name, NULL, NULL, &error), error, RODIFF_NULL_ARGUMENT, "out");
  error = NULL;
  CHECK_ERROR(rodiff_diff_stream(NULL, name, NULL, never, NULL, &flag, &error), error, RODIFF_NULL_ARGUMENT, "client");
  error = NULL;
  CHECK_ERROR(rodiff_diff_stream(client, NULL, NULL, never, NULL, &flag, &error), error, RODIFF_NULL_ARGUMENT, "container");
  error = NULL;
  CHECK_ERROR(rodiff_diff_stream(client, name, NULL, NULL, NULL, &flag, &error), error, RODIFF_NULL_ARGUMENT, "callback");
  error = NULL;
  CHECK_ERROR(rodiff_plan(NULL, name, NULL, RODIFF_PLAN_DOCKER, &text, &error), error, RODIFF_NULL_ARGUMENT, "client");
  error = NULL;
  CHECK_ERROR(rodiff_plan(client, NULL, NULL, RODIFF_PLAN_DOCKER, &text, &error), error, RODIFF_NULL_ARGUMENT, "container");
  error = NULL;
  CHECK_ERROR(rodiff_plan(client, name, NULL, RODIFF_PLAN_DOCKER, NULL, &error), error, RODIFF_NULL_ARGUMENT, "out");
  error = NULL;
  CHECK_ERROR(rodiff_verify(NULL, name, NULL, 0, NULL, &flag, NULL, &error), error, RODIFF_NULL_ARGUMENT, "client");
  error = NULL;
  CHECK_ERROR(rodiff_verify(client, NULL, NULL, 0, NULL, &flag, NULL, &error), error, RODIFF_NULL_ARGUMENT, "container");
  error = NULL;
  CHECK_ERROR(rodiff_verify(client, name, NULL, 0, NULL, NULL, NULL, &error), error, RODIFF_NULL_ARGUMENT, "passed");
  CHECK(out_client == SENTINEL && changes == SENTINEL && text == (char *)SENTINEL && flag, "outputs written on failure");
  /* Without an error slot the code still tells. */
  CHECK(rodiff_diff(NULL, name, NULL, &changes, NULL) == RODIFF_NULL_ARGUMENT, "NULL client, NULL error slot");
  CHECK(rodiff_diff(client, "", NULL, &changes, NULL) == RODIFF_INVALID_ARGUMENT, "empty container name");

  /* Not UTF-8: a container name, an option, a pod, a probe. */
  all_fail(client, "rodiff-\xff\xfe-bad", NULL, RODIFF_INVALID_ARGUMENT, "container is not UTF-8");
  rodiff_options bad = {0};
  bad.docker_host = "unix:///run/\xff.sock";
  error = NULL;
  CHECK_ERROR(rodiff_client_new(&bad, &out_client, &error), error, RODIFF_INVALID_ARGUMENT, "docker_host");
  rodiff_call bad_pod = {0};
  bad_pod.pod = "shop/\xc3\x28";
  all_fail(client, NULL, &bad_pod, RODIFF_INVALID_ARGUMENT, "pod");
  error = NULL;
  CHECK_ERROR(rodiff_verify(client, name, "echo \xff", 0, NULL, &flag, NULL, &error), error, RODIFF_INVALID_ARGUMENT, "probe");

  /* Values rodiff does not know: a plan format (checked before anything is asked: even for an
   * unknown container or an endpoint that is down), a runtime, a malformed pod; a pod to verify. */
  rodiff_plan_format formats[] = {4, 0xffffffffu};
  for (int i = 0; i < 2; i++) {
    error = NULL;
    CHECK_ERROR(rodiff_plan(client, name, NULL, formats[i], &text, &error), error, RODIFF_INVALID_ARGUMENT, "plan format");
    error = NULL;
    CHECK_ERROR(rodiff_plan(client, unknown, NULL, formats[i], &text, &error), error, RODIFF_INVALID_ARGUMENT, "plan format");
  }
  rodiff_options odd = {0};
  odd.runtime = 2;
  error = NULL;
  CHECK_ERROR(rodiff_client_new(&odd, &out_client, &error), error, RODIFF_INVALID_ARGUMENT, "runtime");
  rodiff_options crowded = {0};
  crowded.walkers = RODIFF_MAX_WALKERS + 1; /* tens of thousands of threads asked: refused, none made */
  error = NULL;
  CHECK_ERROR(rodiff_client_new(&crowded, &out_client, &error), error, RODIFF_INVALID_ARGUMENT, "walkers");
  rodiff_call malformed = {0};
  malformed.pod = "no-slash";
  all_fail(client, NULL, &malformed, RODIFF_INVALID_ARGUMENT, "pod");
  rodiff_call pod = {0};
  pod.pod = "shop/web-0";
  error = NULL;
  CHECK_ERROR(rodiff_verify(client, name, NULL, 0, &pod, &flag, NULL, &error), error, RODIFF_INVALID_ARGUMENT, "pod");
  CHECK(out_client == SENTINEL && text == (char *)SENTINEL && flag, "outputs written on failure");

  /* The accessors and destructors take NULL. */
  CHECK(rodiff_error_code(NULL) == RODIFF_NULL_ARGUMENT, "rodiff_error_code(NULL)");
  CHECK(rodiff_error_message(NULL) == NULL, "rodiff_error_message(NULL)");
  rodiff_error_free(NULL);
  rodiff_string_free(NULL);
  rodiff_changes_free(NULL);
  rodiff_client_free(NULL);
  rodiff_cancel_cancel(NULL);
  rodiff_cancel_free(NULL);

  /* Success clears a stale error slot, and a failure after a success still reports. */
  error = SENTINEL;
  changes = NULL;
  CHECK(rodiff_diff(client, name, NULL, &changes, &error) == RODIFF_OK && error == NULL, "success leaves *error NULL");
  rodiff_changes_free(changes);

  rodiff_client_free(client);
  check_threads_end(10);
  return check_done();
}

/* On a thread of its own: see check_in_thread. */
int main(int argc, char **argv) { return check_in_thread(test_main, argc, argv); }
