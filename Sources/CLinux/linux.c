// linux.c: see include/CLinux.h. Between fork and exec the child of
// backy_spawn only makes system calls: the parent is multi-threaded.
#define _GNU_SOURCE
#include "CLinux.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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
