// MountControl: `backy umount MOUNTPOINT`. It checks that MOUNTPOINT is a
// backy mount, refuses (changing nothing) while a partition's files are in
// use, asks the serving process (its pid is in MOUNTPOINT/.backy-mount) to
// end with SIGTERM, and waits until it has unmounted everything, ended its
// helpers and released its pins. A mount whose process is gone (killed, and
// its watchdog killed too) is detached.
import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum MountControl {
    /// Unmounts the backy mount at `path`; returns what was done.
    public static func unmount(_ path: String, timeout: Double = 60) throws -> String {
        let real = MountTable.canonical(path)
        guard let entry = MountTable.mount(at: real) else {
            if !Posix.exists(real) { throw BackyError(.notFound, "\(path) does not exist") }
            throw BackyError(.usage, "\(path) is not mounted")
        }
        guard entry.fstype == MountTable.backyType else {
            throw BackyError(.usage, "\(path) is not a backy mount (it is \(entry.fstype))")
        }
        // Who serves it. A dead one cannot answer the read.
        guard let bytes = try? Posix.readFile(real + "/" + MountSession.infoName, limit: Posix.Limit.metadata),
              let doc = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let pid = (doc["pid"] as? NSNumber)?.int32Value, pid > 1 else {
            MountTable.unmount(real, lazy: true)
            return "\(path): its backy process is gone; the stale mount was removed"
        }
        for m in MountTable.mounts(below: real) where MountTable.isBusy(m.mountpoint) {
            throw BackyError(.locked, "\(m.mountpoint) is in use (open files or a working directory in it); nothing was unmounted")
        }
        guard kill(pid, SIGTERM) == 0 else {
            MountTable.unmount(real, lazy: true)
            return "\(path): its backy process \(pid) is gone; the stale mount was removed"
        }
        let deadline = Date().addingTimeInterval(timeout)
        while isAlive(pid) {
            if Date() > deadline {
                throw BackyError(.other, "backy process \(pid) serving \(path) did not end within \(Int(timeout)) s")
            }
            usleep(10_000)
        }
        // Whatever is left (the process was killed meanwhile): detach it.
        if MountTable.mount(at: real) != nil || !MountTable.mounts(below: real).isEmpty {
            MountTable.unmount(real, lazy: true)
        }
        return "Unmounted \(path)"
    }

    /// Whether `pid` runs (a zombie does not).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let bytes = try? Posix.readFile("/proc/\(pid)/stat", limit: Posix.Limit.metadata) else { return false }
        let text = String(decoding: bytes, as: UTF8.self)
        // "pid (comm) S ...": the state follows the last ')'.
        guard let close = text.lastIndex(of: ")") else { return true }
        let rest = text[text.index(after: close)...].trimmingCharacters(in: .whitespaces)
        return !(rest.hasPrefix("Z") || rest.hasPrefix("X"))
    }
}
