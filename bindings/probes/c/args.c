/* args: argument checking and the out-parameter contract.
 * - invalid enum values (runtime 7, plan format 99) are RODIFF_INVALID_ARGUMENT;
 * - out-parameters are written only on success (pre-filled sentinels stay on failure);
 * - *error is set to NULL on success even when it held garbage;
 * - rodiff_changes_get out of range / SIZE_MAX / NULL list is NULL; len(NULL) is 0;
 * - error accessors on NULL;
 * - a container name with bad UTF-8, an empty name, a pod that is not NS/NAME;
 * - deadline_ms = UINT64_MAX, timeout_ms = UINT64_MAX work (no overflow panic);
 * - deadline_ms = 1 gives RODIFF_TIMEOUT (diff, plan, stream), and the client works after. */
#include "probe.h"

#define SENTINEL ((void *)0x5a5a5a5a)

int main(void) {
  const char *corpus = getenv("PROBE_CORPUS");
  rodiff_error *e = NULL;
  rodiff_client *cl = SENTINEL;
  rodiff_options o = {0};
  o.runtime = 7;
  rodiff_result r = rodiff_client_new(&o, &cl, &e);
  CHECK_ERROR(r, e, RODIFF_INVALID_ARGUMENT, "runtime");
  CHECK(cl == SENTINEL, "out written on failure");

  /* options with bad UTF-8 strings */
  rodiff_options o2 = {0};
  o2.docker_host = "unix:///\xff";
  r = rodiff_client_new(&o2, &cl, &e);
  CHECK_ERROR(r, e, RODIFF_INVALID_ARGUMENT, "docker_host");

  rodiff_client *client = check_docker_client(0);

  char *plan = SENTINEL;
  r = rodiff_plan(client, corpus, NULL, 99, &plan, &e);
  CHECK_ERROR(r, e, RODIFF_INVALID_ARGUMENT, "99");
  CHECK(plan == SENTINEL, "plan out written on failure");

  rodiff_changes *list = SENTINEL;
  r = rodiff_diff(client, "no-such-container-probe", NULL, &list, &e);
  CHECK_ERROR(r, e, RODIFF_CONTAINER_NOT_FOUND, "no-such-container-probe");
  CHECK(list == SENTINEL, "list out written on failure");

  bool complete = true;
  r = rodiff_diff_stream(client, "no-such-container-probe", NULL, NULL, NULL, &complete, &e);
  CHECK_ERROR(r, e, RODIFF_NULL_ARGUMENT, "callback");

  /* garbage in *error before a successful call */
  e = SENTINEL;
  list = NULL;
  r = rodiff_diff(client, corpus, NULL, &list, &e);
  CHECK(r == RODIFF_OK && e == NULL, "success: r %d, *error %p (want NULL)", r, (void *)e);

  CHECK(rodiff_changes_get(list, rodiff_changes_len(list)) == NULL, "get(len) not NULL");
  CHECK(rodiff_changes_get(list, SIZE_MAX) == NULL, "get(SIZE_MAX) not NULL");
  CHECK(rodiff_changes_get(NULL, 0) == NULL, "get(NULL, 0) not NULL");
  CHECK(rodiff_changes_len(NULL) == 0, "len(NULL)");
  CHECK(rodiff_changes_get(list, 0) == rodiff_changes_get(list, 0), "get not stable");
  rodiff_changes_free(list);
  CHECK(rodiff_error_code(NULL) == RODIFF_NULL_ARGUMENT, "code(NULL)");
  CHECK(rodiff_error_message(NULL) == NULL, "message(NULL)");

  list = SENTINEL;
  r = rodiff_diff(client, "bad\xff\xfe", NULL, &list, &e);
  CHECK_ERROR(r, e, RODIFF_INVALID_ARGUMENT, "container");
  r = rodiff_diff(client, "", NULL, &list, &e);
  CHECK_ERROR(r, e, RODIFF_INVALID_ARGUMENT, NULL);
  rodiff_call bad_pod = {0};
  bad_pod.pod = "no-slash";
  r = rodiff_diff(client, NULL, &bad_pod, &list, &e);
  CHECK_ERROR(r, e, RODIFF_INVALID_ARGUMENT, "pod");
  bad_pod.pod = "ns/\xff";
  r = rodiff_diff(client, NULL, &bad_pod, &list, &e);
  CHECK_ERROR(r, e, RODIFF_INVALID_ARGUMENT, "pod");
  CHECK(list == SENTINEL, "list out written on failure");

  /* huge deadline / timeout */
  rodiff_call far = {0};
  far.deadline_ms = UINT64_MAX;
  list = NULL;
  r = rodiff_diff(client, corpus, &far, &list, &e);
  CHECK(r == RODIFF_OK, "deadline UINT64_MAX: %d %s", r, rodiff_error_message(e));
  rodiff_error_free(e); e = NULL;
  rodiff_changes_free(list);
  rodiff_options big = {0};
  big.docker_host = check_env("DOCKER_HOST");
  big.timeout_ms = UINT64_MAX;
  rodiff_client *c2 = NULL;
  r = rodiff_client_new(&big, &c2, &e);
  CHECK(r == RODIFF_OK, "timeout UINT64_MAX new: %d %s", r, rodiff_error_message(e));
  rodiff_error_free(e); e = NULL;
  if (c2) {
    list = NULL;
    r = rodiff_diff(c2, corpus, NULL, &list, &e);
    CHECK(r == RODIFF_OK, "timeout UINT64_MAX diff: %d %s", r, rodiff_error_message(e));
    rodiff_error_free(e); e = NULL;
    rodiff_changes_free(list);
    rodiff_client_free(c2);
  }

  /* 1 ms deadline */
  rodiff_call quick = {0};
  quick.deadline_ms = 1;
  int timeouts = 0;
  for (int i = 0; i < 5; i++) {
    list = SENTINEL;
    r = rodiff_diff(client, getenv("PROBE_BIG"), &quick, &list, &e);
    if (r == RODIFF_TIMEOUT) timeouts++;
    CHECK(r == RODIFF_TIMEOUT || r == RODIFF_OK, "1 ms diff: %d %s", r, rodiff_error_message(e));
    if (r != RODIFF_OK) CHECK(list == SENTINEL, "list written on failure");
    else rodiff_changes_free(list);
    rodiff_error_free(e); e = NULL;
    plan = SENTINEL;
    r = rodiff_plan(client, corpus, &quick, RODIFF_PLAN_DOCKER, &plan, &e);
    CHECK(r == RODIFF_TIMEOUT || r == RODIFF_OK, "1 ms plan: %d %s", r, rodiff_error_message(e));
    if (r == RODIFF_OK) rodiff_string_free(plan);
    rodiff_error_free(e); e = NULL;
  }
  CHECK(timeouts > 0, "a 1 ms deadline never timed out a 10,000-file diff");
  list = NULL;
  r = rodiff_diff(client, corpus, NULL, &list, &e);
  CHECK(r == RODIFF_OK, "after timeouts: %d %s", r, rodiff_error_message(e));
  rodiff_error_free(e);
  rodiff_changes_free(list);
  rodiff_client_free(client);
  return check_done();
}
