// ChildProcess.swift — starting and waiting for the `backy` subprocesses of the
// scheduler. Each child gets its own session (so a Ctrl-C in the scheduler's
// terminal does not hit it and the whole process group can be signalled), stdin
// from /dev/null, stdout and stderr appended to a log file, default signal
// dispositions and an empty signal mask.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum ChildProcess {
    // <spawn.h> flags (glibc values).
    private static let setSigDef: Int32 = 0x04
    private static let setSigMask: Int32 = 0x08
    private static let setSID: Int32 = 0x80

    /// Starts `executable` with `arguments` (argv[0] excluded). Returns the pid.
    /// `passFD`: a descriptor the child gets as fd 3 (the lease feed).
    static func spawn(_ executable: String, _ arguments: [String], outputFile: String, passFD: Int32? = nil) throws -> pid_t {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        // Never through a symlink planted as the job's log, and never
        // blocking on a FIFO planted there (both fail the run instead).
        posix_spawn_file_actions_addopen(&fileActions, 1, outputFile, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o644)
        posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        // Nothing else is inherited: not the console's sockets, not the daemon's
        // log or lock (most are close-on-exec, but not every library's are).
        let firstClosed: Int32 = passFD == nil ? 3 : 4
        if let fd = passFD { posix_spawn_file_actions_adddup2(&fileActions, fd, 3) }
        if let closeFrom = closeFrom {
            _ = closeFrom(&fileActions, firstClosed)
        } else {
            for fd in openDescriptors() where fd >= firstClosed { posix_spawn_file_actions_addclose(&fileActions, fd) }
        }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(setSigDef | setSigMask | setSID))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = argv.withUnsafeBufferPointer { buf in
            posix_spawn(&pid, executable, &fileActions, &attr, buf.baseAddress!, environ)
        }
        if rc != 0 {
            throw NSError(domain: "backy", code: Int(rc), userInfo: [NSLocalizedDescriptionKey:
                "cannot run \(executable) (output to \(outputFile)): \(String(cString: strerror(rc)))"])
        }
        return pid
    }

    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc ≥ 2.34's posix_spawn_file_actions_addclosefrom_np (not in Swift's Glibc module).
    private static let closeFrom: CloseFrom? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(sym, to: CloseFrom.self)
    }()

    /// The process's open descriptors (from /proc/self/fd).
    private static func openDescriptors() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int32($0) }
    }

    /// Waits for `pid`; returns its exit code, or 128 + N if signal N killed it.
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, 0)
            if r == pid { break }
            if r < 0 && errno == EINTR { continue }
            return -1
        }
        let low = status & 0x7f
        if low == 0 { return (status >> 8) & 0xff }  // WIFEXITED → WEXITSTATUS
        return 128 + low                               // WTERMSIG
    }

    /// Sends `signal` to the child's process group (it is a session leader).
    static func signalGroup(_ pid: pid_t, _ signal: Int32) {
        guard pid > 0 else { return }
        if kill(-pid, signal) != 0 { kill(pid, signal) }
    }
}
