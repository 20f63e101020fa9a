// MountTable: the kernel's mount table (/proc/self/mountinfo) and unmounting:
// which mounts lie at or below a directory, whether one is a backy mount,
// and umount2 with fusermount3 as the fallback for non-root users.
import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum MountTable {
    public struct Entry: Sendable, Equatable {
        public var mountpoint: String
        public var fstype: String
        public var source: String
        public var options: String
    }

    /// The fstype of backy's own FUSE filesystems.
    public static let backyType = "fuse.backy"

    /// Every mount, in mount order.
    public static func entries() -> [Entry] {
        guard let bytes = try? Posix.readFile("/proc/self/mountinfo", limit: Posix.Limit.configuration) else { return [] }
        var out: [Entry] = []
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 10, let dash = f.firstIndex(of: "-"), dash + 3 <= f.count else { continue }
            out.append(Entry(mountpoint: unescape(f[4]), fstype: f[dash + 1], source: unescape(f[dash + 2]),
                             options: f[5]))
        }
        return out
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == 0x5C, i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The absolute, symlink-free form of `path`, resolving only its parent:
    /// a dead FUSE mount cannot be looked at, but it can be named.
    public static func canonical(_ path: String) -> String {
        let abs = URL(fileURLWithPath: path).standardizedFileURL.path
        if abs == "/" { return abs }
        let parent = Posix.parentDirectory(abs)
        let p = Posix.realpath(parent) ?? parent
        return (p == "/" ? "" : p) + "/" + (abs as NSString).lastPathComponent
    }

    /// The mount at exactly `path` (the last one if several are stacked).
    public static func mount(at path: String) -> Entry? {
        entries().last { $0.mountpoint == path }
    }

    /// Mounts strictly below `path`, deepest first (the order to unmount them).
    public static func mounts(below path: String) -> [Entry] {
        let prefix = path.hasSuffix("/") ? path : path + "/"
        return entries().filter { $0.mountpoint.hasPrefix(prefix) }
            .sorted { $0.mountpoint.count > $1.mountpoint.count }
    }

    /// Unmounts `path`; with `lazy`, detaches it (and everything below it)
    /// even while in use. Returns whether it is gone. Sets errno on failure.
    @discardableResult
    public static func unmount(_ path: String, lazy: Bool) -> Bool {
        if umount2(path, lazy ? mntDetach : 0) == 0 { return true }
        let err = errno
        if err == EPERM, let fm = Spawn.which("fusermount3") {
            let out = try? Spawn.run(fm, lazy ? ["-u", "-z", "-q", "--", path] : ["-u", "-q", "--", path], timeout: 30)
            if out?.status == 0 { return true }
        }
        errno = err
        return false
    }

    /// Whether the mount at `path` is in use (open files, working
    /// directories), without unmounting it: umount2's MNT_EXPIRE answers
    /// EBUSY for a busy mount and EAGAIN (only marking it) for an idle one.
    public static func isBusy(_ path: String) -> Bool {
        let rc = umount2(path, mntExpire)
        let err = errno
        // Any use of the mount clears the mark again (a second MNT_EXPIRE
        // would unmount it).
        var st = stat()
        _ = stat(path, &st)
        return rc != 0 && err == EBUSY
    }

    // <sys/mount.h> flags of umount2.
    static let mntDetach: Int32 = 2
    static let mntExpire: Int32 = 4
}
