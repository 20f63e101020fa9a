// CLinux: starting a child process with what posix_spawn cannot give: a
// parent-death signal (the child is signalled when the thread that started
// it, or the whole process, dies, even by SIGKILL).
#ifndef BACKY_CSPAWN_H
#define BACKY_CSPAWN_H
#include <sys/types.h>

/// Forks and executes `path` with `argv` (NULL-terminated) and the current
/// environment. The child gets `in_fd`, `out_fd`, `err_fd` as 0, 1, 2
/// (-1: /dev/null) and `extra_fd` as 3 (-1: none); every other descriptor is
/// closed. Signal mask and dispositions are reset to defaults. With
/// `pdeathsig` > 0 the child receives that signal when its parent thread
/// dies (and exits at once if the parent is already gone); with
/// `new_session` it becomes a session leader. Returns the pid, or -1 with
/// errno set. If exec fails the child exits with status 127.
pid_t backy_spawn(const char *path, char *const argv[], int in_fd, int out_fd, int err_fd,
                  int extra_fd, int pdeathsig, int new_session);

/// Forks a watchdog for the FUSE mount at `mountpoint` (see
/// Sources/Mount/Watchdog.swift). The child keeps only `pipe_rd`; it exits
/// quietly when it reads "done", and undoes the mount when the pipe reaches
/// end of file or its parent is exiting (PF_EXITING: a process whose exit is
/// stuck on a request to its own FUSE mount never closes the pipe):
/// umount2(MNT_FORCE | MNT_DETACH), which aborts the FUSE connection and
/// detaches everything mounted below; fusermount3 -uz without the right to
/// do that. With `remove_dir` it then removes the mount point. Returns the
/// child's pid or -1.
pid_t backy_watchdog(int pipe_rd, const char *mountpoint, const char *fusermount, int remove_dir);

/// pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0)).
int backy_pipe(int fds[2], int nonblocking);

/// memfd_create(name, MFD_CLOEXEC).
int backy_memfd(const char *name);

/// syncfs(fd).
int backy_syncfs(int fd);
#endif
