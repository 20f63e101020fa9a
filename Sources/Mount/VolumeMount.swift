// VolumeMount: the files of one partition (or of the whole disk), mounted
// read-only on its directory inside a revision mount from that volume's raw
// view (partN.raw). ext2/3/4 always go through fuse2fs, in userspace: the
// kernel's filesystem drivers never parse untrusted bytes unless the
// operator asks (--kernel: a read-only loop mount for types the running
// kernel knows). fuse2fs runs in the foreground as backy's child and is
// SIGKILLed if backy dies.
import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class VolumeMount {
    public enum Kind: String, Sendable { case fuse2fs, kernel }

    public let volume: Volume
    /// Where its files are.
    public let path: String
    public let kind: Kind
    /// fuse2fs's pid.
    public let pid: pid_t?
    public private(set) var exitStatus: Int32?

    private init(volume: Volume, path: String, kind: Kind, pid: pid_t?) {
        self.volume = volume
        self.path = path
        self.kind = kind
        self.pid = pid
    }

    public enum Refusal: Error, CustomStringConvertible {
        /// Not mountable here; the text says why (for the operator).
        case notMounted(String)
        public var description: String {
            switch self { case .notMounted(let s): return s }
        }
    }

    /// How a volume would be mounted, or why it is not: nil type, LVM, LUKS,
    /// swap, a type that needs --kernel, or one the kernel lacks.
    public static func plan(_ v: Volume, kernel: Bool) -> Result<Kind, Refusal> {
        if v.isExt {
            return Spawn.which("fuse2fs") != nil ? .success(.fuse2fs)
                : .failure(.notMounted("not opened: fuse2fs is not installed"))
        }
        if let why = v.unopenable { return .failure(.notMounted(why)) }
        let t = v.type!
        guard kernel else {
            return .failure(.notMounted("not opened (--kernel mounts it read-only through the kernel's driver)"))
        }
        guard kernelKnows(t) else { return .failure(.notMounted("not opened: the running kernel has no \(t) driver")) }
        return .success(.kernel)
    }

    static func kernelKnows(_ type: String) -> Bool {
        guard let bytes = try? Posix.readFile("/proc/filesystems", limit: Posix.Limit.metadata) else { return false }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n")
            .contains { $0.split(separator: "\t").last.map(String.init) == type }
    }

    /// Mounts `v`'s filesystem from `image` (its raw view) on the existing
    /// directory `at`. Throws `Refusal` with the tool's last words on failure.
    public static func mount(_ v: Volume, image: String, at target: String, kind: Kind) throws -> VolumeMount {
        switch kind {
        case .fuse2fs:
            guard let exe = Spawn.which("fuse2fs") else { throw Refusal.notMounted("fuse2fs is not installed") }
            let out = try OutputCapture()
            defer { out.close() }
            let opts = "ro,nosuid,nodev,noexec,fsname=backy-\(v.name)"
            let pid = try Spawn.start(exe, ["-f", "-o", opts, image, target], stdout: out.fd, stderr: out.fd,
                                      dieWithParent: true)
            let deadline = Date().addingTimeInterval(60)
            var pause: useconds_t = 1_000
            while true {
                if let s = Spawn.poll(pid) {
                    let why = Spawn.Output(status: s, timedOut: false, text: out.text()).lastLines(2).joined(separator: " ")
                    throw Refusal.notMounted("fuse2fs cannot mount it (exit \(s)): \(why.isEmpty ? "no message" : why)")
                }
                if MountTable.mount(at: target) != nil { break }
                if Date() > deadline {
                    kill(pid, SIGKILL)
                    Spawn.wait(pid)
                    throw Refusal.notMounted("fuse2fs did not mount it within 60 s")
                }
                usleep(pause)
                pause = min(pause * 2, 20_000)
            }
            // A damaged filesystem may mount with an unreadable root.
            var st = stat()
            if stat(target, &st) != 0 {
                let err = String(cString: strerror(errno))
                let m = VolumeMount(volume: v, path: target, kind: .fuse2fs, pid: pid)
                m.unmount(force: true)
                let why = Spawn.Output(status: 0, timedOut: false, text: out.text()).lastLines(1).joined()
                throw Refusal.notMounted("fuse2fs cannot read its root directory (\(err))\(why.isEmpty ? "" : ": " + why)")
            }
            return VolumeMount(volume: v, path: target, kind: .fuse2fs, pid: pid)
        case .kernel:
            guard let exe = Spawn.which("mount") else { throw Refusal.notMounted("mount is not installed") }
            var opts = "ro,loop,nosuid,nodev,noexec"
            // Never write to the image, not even a log replay.
            if v.type == "xfs" { opts += ",norecovery" }
            if v.isExt { opts += ",noload" }
            let out = try Spawn.run(exe, ["-t", v.type!, "-o", opts, image, target], timeout: 60)
            guard out.status == 0 else {
                throw Refusal.notMounted("the kernel cannot mount it: \(out.lastLines(2).joined(separator: " "))")
            }
            return VolumeMount(volume: v, path: target, kind: .kernel, pid: nil)
        }
    }

    /// Whether fuse2fs has exited (it does when its mount goes away).
    public func hasExited() -> Bool {
        if exitStatus != nil || pid == nil { return exitStatus != nil }
        if let s = Spawn.poll(pid!) { exitStatus = s }
        return exitStatus != nil
    }

    /// Unmounts; with `force`, detaches it if busy and kills fuse2fs after
    /// a grace period. Returns false (nothing changed) if it is busy and
    /// `force` is off.
    @discardableResult
    public func unmount(force: Bool) -> Bool {
        if MountTable.mount(at: path) != nil {
            if !MountTable.unmount(path, lazy: false) {
                guard force else { return false }
                MountTable.unmount(path, lazy: true)
            }
        }
        if let pid, exitStatus == nil {
            exitStatus = Spawn.wait(pid, seconds: force ? 5 : 30).status
        }
        return true
    }
}
