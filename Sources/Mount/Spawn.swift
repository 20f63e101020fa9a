// Spawn: the helper programs of a mount (fuse2fs, mount, fusermount3, the
// checkers of a drill, the watchdog) started through CLinux: a clean
// descriptor table, default signals, and for the ones that must not outlive
// backy a parent-death signal. Output is captured in a memfd, so a child
// that prints a lot cannot block on a full pipe.
import ChunkStore
import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum Spawn {
    /// The full path of a program found in $PATH (and the sbin directories,
    /// which a non-login root shell may lack), or nil.
    public static func which(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        var dirs = ToolEnvironment.current.searchPath
        for d in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] where !dirs.contains(d) { dirs.append(d) }
        for d in dirs where !d.isEmpty {
            let p = d + "/" + name
            var st = stat()
            if stat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(p, X_OK) == 0 { return p }
        }
        return nil
    }

    /// Starts `exe` (a full path) with `args`. `dieWithParent`: the child
    /// gets SIGKILL when the calling thread or process dies, so call it from
    /// a thread that lives as long as the child should (the main thread).
    public static func start(_ exe: String, _ args: [String], stdin: Int32 = -1, stdout: Int32 = -1,
                             stderr: Int32 = -1, extraFD: Int32 = -1, dieWithParent: Bool,
                             newSession: Bool = false) throws -> pid_t {
        let argv: [UnsafeMutablePointer<CChar>?] = ([exe] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let pid = argv.withUnsafeBufferPointer { buf in
            backy_spawn(exe, buf.baseAddress!, stdin, stdout, stderr, extraFD,
                        dieWithParent ? SIGKILL : 0, newSession ? 1 : 0)
        }
        if pid < 0 { throw BackyError.posix("cannot start \(exe)") }
        return pid
    }

    /// A pipe, close-on-exec at both ends.
    public static func pipe(nonblocking: Bool = false) throws -> (read: Int32, write: Int32) {
        var p: [Int32] = [-1, -1]
        guard backy_pipe(&p, nonblocking ? 1 : 0) == 0 else { throw BackyError.posix("cannot create a pipe") }
        return (p[0], p[1])
    }

    /// The exit status of a finished child: its code, or 128 + N if signal
    /// N ended it.
    static func exitStatus(_ status: Int32) -> Int32 {
        let sig = status & 0x7f
        return sig == 0 ? (status >> 8) & 0xff : 128 + sig
    }

    /// Waits for `pid`; returns its exit status.
    @discardableResult
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, 0)
            if r == pid { return exitStatus(status) }
            if r < 0 && errno == EINTR { continue }
            return -1
        }
    }

    /// The exit status if `pid` has finished, nil while it runs.
    public static func poll(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return exitStatus(status) }
        if r < 0 && errno == ECHILD { return -1 }
        return nil
    }

    /// Waits up to `seconds` for `pid`; then SIGKILLs it (with `group`, its
    /// whole process group: it must be a session or group leader) and reaps
    /// it. Returns the exit status and whether it had to be killed.
    @discardableResult
    public static func wait(_ pid: pid_t, seconds: Double, group: Bool = false) -> (status: Int32, killed: Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        var pause: useconds_t = 1_000
        while Date() < deadline {
            if let s = poll(pid) { return (s, false) }
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
        if !group || kill(-pid, SIGKILL) != 0 { kill(pid, SIGKILL) }
        return (wait(pid), true)
    }

    /// The result of `run`.
    public struct Output: Sendable {
        public var status: Int32
        public var timedOut: Bool
        public var text: String
        /// The last `n` non-empty lines of the output.
        public func lastLines(_ n: Int) -> [String] {
            Array(text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).map(String.init)
                .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.suffix(n))
        }
    }

    /// Runs `exe` to completion (stdout and stderr together, at most
    /// `maxOutput` bytes kept, the end of it), killing it after `timeout`
    /// seconds. The child dies with backy.
    public static func run(_ exe: String, _ args: [String], timeout: Double, maxOutput: Int = 1 << 20) throws -> Output {
        let out = try OutputCapture()
        defer { out.close() }
        let pid = try start(exe, args, stdout: out.fd, stderr: out.fd, dieWithParent: true, newSession: true)
        // Checkers may start children of their own: a timeout ends the group.
        let (status, killed) = wait(pid, seconds: timeout, group: true)
        return Output(status: status, timedOut: killed, text: out.text(limit: maxOutput))
    }
}

/// An anonymous in-memory file a child writes its output into.
public final class OutputCapture {
    public let fd: Int32

    public init() throws {
        fd = backy_memfd("backy-output")
        if fd < 0 { throw BackyError.posix("memfd_create") }
    }

    /// The last `limit` bytes written, as text.
    public func text(limit: Int = 1 << 20) -> String {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return "" }
        let size = Int(st.st_size)
        let start = max(0, size - limit)
        var bytes = [UInt8](repeating: 0, count: size - start)
        let n = bytes.withUnsafeMutableBytes { (try? Posix.preadFull(fd, $0.baseAddress!, $0.count, Int64(start), path: "output")) ?? 0 }
        return String(decoding: bytes[0..<n], as: UTF8.self)
    }

    public func close() { Glibc.close(fd) }
}
