// Gate: the directory backend's gate between sessions and purge, a flock on
// `.pins/gate` (docs/store-format.md, "Purge and concurrent sessions").
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The gate: a file lock taken shared for a moment by sessions while they
/// pin, and exclusively by purge and quarantine while they decide and delete.
/// One `Gate` per thread (flock locks belong to the open file description).
public final class Gate: StoreGate {
    public let path: String
    private var fd: Int32 = -1

    public init(jobPath: String) {
        path = jobPath + "/" + PinSession.directoryName + "/" + PinSession.gateName
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    private func ensureOpen() throws {
        if fd >= 0 { return }
        try Posix.mkdirIfMissing(Posix.parentDirectory(path))
        fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw BackyError.posix("cannot open gate \(path)") }
    }

    private func take(_ op: Int32) throws {
        try ensureOpen()
        while flock(fd, op) != 0 {
            if errno == EINTR { continue }
            throw BackyError.posix("cannot lock \(path)")
        }
    }

    /// Runs `body` holding the gate shared.
    public func shared<T>(_ body: () throws -> T) throws -> T {
        try take(LOCK_SH)
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    /// Runs `body` holding the gate exclusively.
    public func exclusive<T>(_ body: () throws -> T) throws -> T {
        try take(LOCK_EX)
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}
