// Watchdog: what undoes a mount when backy cannot, because it was killed
// (SIGKILL, OOM). A forked child (CLinux's backy_watchdog: no exec, its own
// session, nothing of backy's open but one pipe) waits on that pipe, whose
// only writer is backy, and watches backy's state. When backy ends without
// saying "done", or is stuck exiting (a thread of a dying process can wait
// forever on a request to the process's own FUSE mount), it unmounts with
// MNT_FORCE | MNT_DETACH: the FUSE connection is aborted (every waiting
// request fails, so the exit completes) and the whole tree below the mount
// point is detached; for a private mount it removes the directory. fuse2fs
// children die with backy through their parent-death signal, and backy's pins
// lapse with its flock, as any dead session's do.
import ChunkStore
import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class Watchdog {
    public let pid: pid_t
    private var fd: Int32

    /// Starts a watchdog for a mount at `mountpoint`; `removeDirectory` also
    /// removes the (empty) mount point afterwards.
    public init(mountpoint: String, removeDirectory: Bool) throws {
        let (r, w) = try Spawn.pipe()
        let fusermount = Spawn.which("fusermount3")
        let child = backy_watchdog(r, mountpoint, fusermount, removeDirectory ? 1 : 0)
        Glibc.close(r)
        guard child > 0 else {
            Glibc.close(w)
            throw BackyError.posix("cannot start the mount's watchdog")
        }
        pid = child
        fd = w
    }

    /// The mount was undone properly: the watchdog exits without touching it.
    public func disarm() {
        guard fd >= 0 else { return }
        _ = Glibc.write(fd, "done\n", 5)
        Glibc.close(fd)
        fd = -1
        Spawn.wait(pid, seconds: 10)
    }

    deinit { disarm() }
}
