// RadosJobLock: a job lock (`.backup`, `.purge`, `.meta`) of a RADOS job:
// RADOS lock `backy` on object `lock/<name>`, exclusive or shared, with a
// duration that the connection's keeper thread renews while it is held
// (RadosLease). A holder that dies or stalls stops renewing; the OSD drops
// its lock when the duration ends, and the next taker proceeds.
import Foundation
import Rados
#if canImport(Glibc)
import Glibc
#endif

final class RadosJobLock: JobLock {
    static let lockName = "backy"
    let io: RadosIoctx
    let oid: String
    let duration: Double
    private var lease: RadosLease?

    init(io: RadosIoctx, oid: String, duration: Double) {
        self.io = io
        self.oid = oid
        self.duration = duration
    }

    deinit { lease?.release() }

    var path: String { "rados:\(io.location)/\(oid)" }

    static func cookie() -> String {
        var rng = SystemRandomNumberGenerator()
        return String(format: "%016llx", rng.next() as UInt64)
    }

    private func take(_ mode: LockMode, timeout: Double?) throws -> Bool {
        if lease != nil { return true }
        let l = try RadosBackend.wrap {
            try RadosLease.acquire(io: io, oid: oid, name: RadosJobLock.lockName, kind: mode == .exclusive ? .exclusive : .shared,
                                   cookie: RadosJobLock.cookie(), tag: mode == .shared ? "backy" : "",
                                   description: "backy pid \(getpid())", duration: duration, timeout: timeout)
        }
        lease = l
        return l != nil
    }

    func tryLock(_ mode: LockMode) throws -> Bool { try take(mode, timeout: 0) }

    func lock(_ mode: LockMode) throws { _ = try take(mode, timeout: nil) }

    func unlock() {
        lease?.release()
        lease = nil
    }

    /// Throws unless the lock is still certainly held.
    func check() throws {
        if let l = lease { try RadosBackend.wrap { try l.check() } }
    }
}
