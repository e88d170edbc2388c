/*
 * pod NAMESPACE/NAME: a Kubernetes pod selected through rodiff_call.pod on the sandbox's containerd
 * (run.sh makes it with ctr and the CRI plugin's labels: a sandbox container that wrote
 * /srv/pause-wrote, containers `app` and `sidecar` that wrote /srv/app-wrote and
 * /srv/sidecar-wrote): its containers' changes, each tagged, the sandbox left out; one container
 * of it; the stream and the plan; an unknown pod.
 */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

/* Which of the /srv/...-wrote files the list has, and under which container: a bit per
 * (app, sidecar, pause). */
static unsigned srv_writes(const rodiff_change *c, size_t n) {
  static const char *const files[] = {"/srv/app-wrote", "/srv/sidecar-wrote", "/srv/pause-wrote"};
  static const char *const owners[] = {"app", "sidecar", "POD"};
  unsigned seen = 0;
  for (size_t i = 0; i < n; i++) {
    CHECK(c[i].container != NULL, "a change of a pod without its container");
    for (unsigned f = 0; f < 3; f++) {
      if (c[i].path_len == strlen(files[f]) && memcmp(c[i].path, files[f], c[i].path_len) == 0) {
        CHECK(c[i].container && strcmp(c[i].container, owners[f]) == 0, "%s tagged %s", files[f], c[i].container);
        seen |= 1u << f;
      }
    }
  }
  return seen;
}

static unsigned list_writes(const rodiff_changes *list) {
  unsigned seen = 0;
  for (size_t i = 0; i < rodiff_changes_len(list); i++) seen |= srv_writes(rodiff_changes_get(list, i), 1);
  return seen;
}

static int32_t on_batch(void *userdata, const rodiff_change *changes, size_t len) {
  *(unsigned *)userdata |= srv_writes(changes, len);
  return 0;
}

int main(int argc, char **argv) {
  REQUIRE(argc == 2, "usage: pod NAMESPACE/NAME");
  rodiff_options o = {0};
  o.runtime = RODIFF_RUNTIME_CONTAINERD;
  o.containerd_address = check_env("CONTAINERD_ADDRESS");
  /* containerd_namespace NULL: pods are looked for in k8s.io. */
  rodiff_client *client = NULL;
  REQUIRE(rodiff_client_new(&o, &client, NULL) == RODIFF_OK, "rodiff_client_new");

  rodiff_call call = {0};
  call.pod = argv[1];
  rodiff_changes *list = NULL;
  rodiff_error *error = NULL;
  rodiff_result r = rodiff_diff(client, NULL, &call, &list, &error);
  REQUIRE(r == RODIFF_OK, "rodiff_diff pod %s: %d %s", argv[1], (int)r, rodiff_error_message(error));
  CHECK(list_writes(list) == 3u, "the pod's writes: %#x, want app and sidecar, not the sandbox's", list_writes(list));
  rodiff_changes_free(list);

  r = rodiff_diff(client, "sidecar", &call, &list, &error);
  REQUIRE(r == RODIFF_OK, "rodiff_diff pod %s container sidecar: %d %s", argv[1], (int)r, rodiff_error_message(error));
  CHECK(list_writes(list) == 2u, "container sidecar of the pod: %#x", list_writes(list));
  rodiff_changes_free(list);

  unsigned streamed = 0;
  bool complete = false;
  r = rodiff_diff_stream(client, NULL, &call, on_batch, &streamed, &complete, &error);
  CHECK(r == RODIFF_OK && complete && streamed == 3u, "stream of the pod: %d, %#x %s", (int)r, streamed, rodiff_error_message(error));

  char *plan = NULL;
  r = rodiff_plan(client, NULL, &call, RODIFF_PLAN_K8S, &plan, &error);
  CHECK(r == RODIFF_OK && plan && strstr(plan, "app") && strstr(plan, "sidecar"), "plan of the pod: %d %s %s", (int)r,
        plan ? plan : "", rodiff_error_message(error));
  rodiff_string_free(plan);

  call.pod = "shop/rodiff-c-no-such-pod";
  list = NULL;
  error = NULL;
  CHECK_ERROR(rodiff_diff(client, NULL, &call, &list, &error), error, RODIFF_CONTAINER_NOT_FOUND, "shop/rodiff-c-no-such-pod");
  CHECK(list == NULL, "output written on failure");

  rodiff_client_free(client);
  check_threads_end(10);
  return check_done();
}
