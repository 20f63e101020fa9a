// RadosGate: the gate between sessions and purge of a RADOS job
// (docs/rados.md, "Purge beside writers"): RADOS lock `gate` on object
// `lock/gate`, taken shared by a session for the moment it pins and tests,
// exclusively by purge for one batch. Each hold is a lock with a duration
// (a holder that dies mid-hold blocks the gate for at most that long),
// renewed while held (a long purge batch), released at the end.
import Foundation
import Rados
#if canImport(Glibc)
import Glibc
#endif

final class RadosGate: StoreGate {
    static let lockName = "gate"
    let backend: RadosBackend
    var io: RadosIoctx { backend.io }
    var duration: Double { backend.lockDuration }

    init(backend: RadosBackend) {
        self.backend = backend
    }

    private func hold<T>(_ kind: RadosLockKind, _ body: () throws -> T) throws -> T {
        let lease = try RadosBackend.wrap {
            try RadosLease.acquire(io: io, oid: RadosNames.gate, name: RadosGate.lockName, kind: kind,
                                   cookie: RadosJobLock.cookie(), tag: kind == .shared ? "sessions" : "",
                                   description: "backy pid \(getpid())", duration: duration, timeout: nil, poll: 0.05)!
        }
        // Purge's removals check the exclusive hold before each deletion.
        if kind == .exclusive { backend.purgeGate.with { $0 = lease } }
        defer {
            if kind == .exclusive { backend.purgeGate.with { $0 = nil } }
            lease.release()
        }
        let result = try body()
        // What was decided under the gate holds only if the gate was held
        // all along (a stall past the duration lets the other side in).
        try RadosBackend.wrap { try lease.check() }
        return result
    }

    func shared<T>(_ body: () throws -> T) throws -> T { try hold(.shared, body) }

    func exclusive<T>(_ body: () throws -> T) throws -> T { try hold(.exclusive, body) }
}
