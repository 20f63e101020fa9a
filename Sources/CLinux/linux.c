// linux.c: see include/CLinux.h. Between fork and exec the child of
// backy_spawn only makes system calls: the parent is multi-threaded.
#define _GNU_SOURCE
#include "CLinux.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static void close_from(int first) {
    if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) return;
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = first; fd < max; fd++) close(fd);
}

pid_t backy_spawn(const char *path, char *const argv[], int in_fd, int out_fd, int err_fd,
                  int extra_fd, int pdeathsig, int new_session) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;

    if (pdeathsig > 0) {
        if (prctl(PR_SET_PDEATHSIG, pdeathsig) != 0) _exit(127);
        if (getppid() != parent) _exit(127);
    }
    if (new_session) setsid();

    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < 32; s++) {
        if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    // Move the wanted descriptors out of the way first, so that placing
    // one cannot overwrite another.
    int want[4] = {in_fd, out_fd, err_fd, extra_fd};
    for (int k = 0; k < 4; k++) {
        if (want[k] >= 0) {
            want[k] = fcntl(want[k], F_DUPFD, 64);
            if (want[k] < 0) _exit(127);
        }
    }
    for (int k = 0; k < 4; k++) {
        if (want[k] >= 0) {
            if (dup2(want[k], k) < 0) _exit(127);
        } else if (k < 3) {
            int n = open("/dev/null", k == 0 ? O_RDONLY : O_WRONLY);
            if (n < 0) _exit(127);
            if (n != k) { dup2(n, k); close(n); }
        } else {
            close(k);
        }
    }
    close_from(extra_fd >= 0 ? 4 : 3);
    execv(path, argv);
    _exit(127);
}

int backy_pipe(int fds[2], int nonblocking) {
    return pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0));
}

int backy_memfd(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

int backy_syncfs(int fd) {
    return syncfs(fd);
}

/// Whether process `pid` is gone or exiting (state Z/X, or PF_EXITING in
/// the flags of /proc/PID/stat). Only system calls and plain C.
static int parent_exiting(pid_t pid) {
    // "/proc/<pid>/stat" without stdio (this runs in a forked child).
    char digits[16];
    int nd = 0;
    unsigned v = (unsigned)pid;
    do { digits[nd++] = (char)('0' + v % 10); v /= 10; } while (v > 0 && nd < 15);
    char path[64] = "/proc/";
    int k = 6;
    while (nd > 0) path[k++] = digits[--nd];
    memcpy(path + k, "/stat", 6);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (p == NULL) return 0;
    p++;
    while (*p == ' ') p++;
    char state = *p;
    if (state == 'Z' || state == 'X' || state == 'x') return 1;
    // Fields after the state: ppid pgrp session tty_nr tpgid flags.
    int field = 0;
    while (*p && field < 6) {
        if (*p == ' ') field++;
        p++;
    }
    unsigned long flags = strtoul(p, NULL, 10);
    return (flags & 0x4) != 0;  // PF_EXITING
}

pid_t backy_watchdog(int pipe_rd, const char *mountpoint, const char *fusermount, int remove_dir) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;

    setsid();
    prctl(PR_SET_NAME, "backy-watchdog", 0, 0, 0);
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);
    sigaction(SIGPIPE, &ign, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    // Nothing of the parent stays open here but the pipe: above all not
    // /dev/fuse, which would keep a dead mount's connection alive.
    if (pipe_rd != 3) {
        if (dup2(pipe_rd, 3) < 0) _exit(1);
    }
    close_from(4);
    for (int fd = 0; fd < 3; fd++) close(fd);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) { dup2(devnull, 0); dup2(devnull, 1); dup2(devnull, 2); if (devnull > 3) close(devnull); }

    for (;;) {
        struct pollfd pfd = {.fd = 3, .events = POLLIN, .revents = 0};
        int r = poll(&pfd, 1, 200);
        if (r > 0) {
            char b[8];
            ssize_t n = read(3, b, sizeof b);
            if (n > 0) _exit(0);          // "done": the mount was undone properly
            if (n < 0 && errno == EINTR) continue;
            break;                        // end of file: the parent is gone
        }
        if (r < 0 && errno == EINTR) continue;
        if (getppid() != parent || parent_exiting(parent)) break;
    }
    if (umount2(mountpoint, MNT_FORCE | MNT_DETACH) != 0 && fusermount != NULL) {
        pid_t c = fork();
        if (c == 0) {
            execl(fusermount, fusermount, "-u", "-z", "-q", "--", mountpoint, (char *)NULL);
            _exit(127);
        }
        if (c > 0) {
            int status;
            while (waitpid(c, &status, 0) < 0 && errno == EINTR) {}
        }
    }
    if (remove_dir) rmdir(mountpoint);
    _exit(0);
}
