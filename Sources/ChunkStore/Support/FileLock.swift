// FileLock: flock(2) on an empty file, backy 2.4's lock protocol: the job
// locks of the directory backend (`.backup`, `.purge`, `.meta`) and the
// scheduler's `<base-dir>/.lock`.
// A lock held by a dead process is released by the kernel: no stale locks.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: `fd` is opened, locked and closed only under `mutex` (deinit: no other reference is left).
public final class FileLock: JobLock, @unchecked Sendable {
    public typealias Mode = LockMode

    public let path: String
    private var fd: Int32 = -1
    private let mutex = NSLock()

    public init(path: String) {
        self.path = path
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    private func openFile() throws {
        if fd >= 0 { return }
        fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { fd = Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        if fd < 0 { throw BackyError.posix("cannot open lock file \(path)") }
    }

    /// Takes the lock without waiting; false if another process holds it.
    public func tryLock(_ mode: Mode) throws -> Bool {
        mutex.lock(); defer { mutex.unlock() }
        try openFile()
        let op = (mode == .shared ? LOCK_SH : LOCK_EX) | LOCK_NB
        while flock(fd, op) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { return false }
            throw BackyError.posix("cannot lock \(path)")
        }
        return true
    }

    /// Takes the lock, waiting as long as needed.
    public func lock(_ mode: Mode) throws {
        mutex.lock(); defer { mutex.unlock() }
        try openFile()
        let op = mode == .shared ? LOCK_SH : LOCK_EX
        while flock(fd, op) != 0 {
            if errno == EINTR { continue }
            throw BackyError.posix("cannot lock \(path)")
        }
    }

    /// Takes the lock, waiting at most `timeout` seconds; false on timeout.
    public func lock(_ mode: Mode, timeout: Double) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var pause: useconds_t = 1000
        while true {
            if try tryLock(mode) { return true }
            if Date() >= deadline { return false }
            usleep(pause)
            pause = min(pause * 2, 100_000)
        }
    }

    public func unlock() {
        mutex.lock(); defer { mutex.unlock() }
        if fd >= 0 {
            flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }
}
