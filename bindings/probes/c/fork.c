/* fork: fork() after rodiff_client_new and a first call (the client's I/O and walker threads
 * exist). In the child, (a) a call on the inherited client, (b) a new client. Does the child
 * fail cleanly, or hang? The header says nothing about fork. Exit 0 when both return. */
#include "probe.h"
#include <sys/wait.h>

static int child(int use_inherited, rodiff_client *inherited) {
  alarm(20);
  rodiff_client *c = inherited;
  if (!use_inherited) c = check_docker_client(0);
  rodiff_changes *l = NULL;
  rodiff_error *e = NULL;
  rodiff_result r = rodiff_diff(c, getenv("PROBE_CORPUS"), NULL, &l, &e);
  fprintf(stderr, "child (%s client): %d, %zu changes %s\n", use_inherited ? "inherited" : "new", r, rodiff_changes_len(l), rodiff_error_message(e));
  return r == RODIFF_OK ? 0 : 1;
}

int main(void) {
  rodiff_client *client = check_docker_client(0);
  rodiff_changes *l = NULL;
  rodiff_error *e = NULL;
  REQUIRE(rodiff_diff(client, getenv("PROBE_CORPUS"), NULL, &l, &e) == RODIFF_OK, "parent diff");
  rodiff_changes_free(l);
  int fails = 0;
  for (int inherited = 1; inherited >= 0; inherited--) {
    pid_t pid = fork();
    if (pid == 0) _exit(child(inherited, client));
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) {
      fprintf(stderr, "child (%s client) killed by signal %d%s\n", inherited ? "inherited" : "new", WTERMSIG(st),
              WTERMSIG(st) == SIGALRM ? " (hung for 20 s)" : "");
      fails++;
    } else if (WEXITSTATUS(st) != 0) {
      fprintf(stderr, "child (%s client) exited %d\n", inherited ? "inherited" : "new", WEXITSTATUS(st));
      fails++;
    }
  }
  rodiff_client_free(client);
  return fails ? 1 : 0;
}
