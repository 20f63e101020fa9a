// Watchdog: what undoes a mount when backy cannot, because it was killed
// (SIGKILL, OOM). A small shell in its own session waits on a pipe whose only
// writer is backy: when backy ends without saying "done" (the kernel closes
// the pipe), it detaches the whole mount tree lazily (fusermount3 -uz, which
// takes every filesystem mounted below along) and, for a private mount,
// removes its directory. fuse2fs children die with backy through their
// parent-death signal, and backy's pins lapse with its flock, as any dead
// session's do.
import ChunkStore
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
        let p = [r, w]
        let fusermount = Spawn.which("fusermount3") ?? "fusermount3"
        let umount = Spawn.which("umount") ?? "umount"
        var script = "read x; [ \"$x\" = done ] && exit 0; "
        script += "\"$1\" -u -z -q -- \"$3\" 2>/dev/null || \"$2\" -l -- \"$3\" 2>/dev/null; "
        if removeDirectory { script += "rmdir -- \"$3\" 2>/dev/null; " }
        script += "exit 0"
        do {
            pid = try Spawn.start("/bin/sh", ["-c", script, "backy-watchdog", fusermount, umount, mountpoint],
                                  stdin: p[0], dieWithParent: false, newSession: true)
        } catch {
            Glibc.close(p[0])
            Glibc.close(p[1])
            throw error
        }
        Glibc.close(p[0])
        fd = p[1]
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
