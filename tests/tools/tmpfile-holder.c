/*
 * tmpfile-holder: makes writes that leave no name in a directory, for rodiff's live-evidence
 * tests. Built statically into the sandbox's busybox test image as /bin/tmpfile-holder
 * (scripts/images/busybox/build).
 *
 *   tmpfile-holder hold DIR [N]         open N (default 1) O_TMPFILE files in DIR, write to each,
 *                                       keep them open and sleep
 *   tmpfile-holder unlinked DIR [NAME]  create DIR/NAME (default rodiff-unlinked.PID), write,
 *                                       unlink it, keep it open and sleep
 *   tmpfile-holder once DIR [SECONDS]   make an O_TMPFILE file in DIR, write, close it, then sleep
 *                                       SECONDS (default: forever; 0: exit at once)
 *   tmpfile-holder memfd                make a memfd, write to it, keep it open and sleep
 *
 * It prints "ready" on stdout once the files are made. A failure is one line on stderr naming the
 * path and strerror(errno) ("... /tmp: Read-only file system"), and exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void fail(const char *what, const char *path) {
    fprintf(stderr, "tmpfile-holder: %s \"%s\": %s\n", what, path, strerror(errno));
    exit(1);
}

static void write_some(int fd, const char *path) {
    static const char data[] = "written by tmpfile-holder\n";
    if (write(fd, data, sizeof data - 1) != (ssize_t)(sizeof data - 1)) fail("write", path);
}

static int tmpfile_in(const char *dir) {
    int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    if (fd < 0) fail("open(O_TMPFILE) in", dir);
    write_some(fd, dir);
    return fd;
}

static void ready_then_sleep(long seconds) {
    printf("ready\n");
    fflush(stdout);
    if (seconds < 0)
        for (;;) pause();
    sleep((unsigned)seconds);
    exit(0);
}

static void usage(void) {
    fprintf(stderr, "usage: tmpfile-holder hold DIR [N] | unlinked DIR [NAME] | once DIR [SECONDS] | memfd\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *mode = argv[1];
    if (strcmp(mode, "hold") == 0 && (argc == 3 || argc == 4)) {
        long n = argc == 4 ? strtol(argv[3], NULL, 10) : 1;
        if (n < 1) usage();
        for (long i = 0; i < n; i++) tmpfile_in(argv[2]);
        ready_then_sleep(-1);
    } else if (strcmp(mode, "unlinked") == 0 && (argc == 3 || argc == 4)) {
        char path[4096];
        if (argc == 4)
            snprintf(path, sizeof path, "%s/%s", argv[2], argv[3]);
        else
            snprintf(path, sizeof path, "%s/rodiff-unlinked.%ld", argv[2], (long)getpid());
        int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd < 0) fail("create", path);
        write_some(fd, path);
        if (unlink(path) != 0) fail("unlink", path);
        ready_then_sleep(-1);
    } else if (strcmp(mode, "once") == 0 && (argc == 3 || argc == 4)) {
        int fd = tmpfile_in(argv[2]);
        close(fd);
        ready_then_sleep(argc == 4 ? strtol(argv[3], NULL, 10) : -1);
    } else if (strcmp(mode, "memfd") == 0 && argc == 2) {
        int fd = memfd_create("rodiff-memfd", 0);
        if (fd < 0) fail("memfd_create", "rodiff-memfd");
        write_some(fd, "memfd");
        ready_then_sleep(-1);
    }
    usage();
}
