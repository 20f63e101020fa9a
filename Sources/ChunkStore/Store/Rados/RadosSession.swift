// RadosSession: a session of a RADOS job (docs/rados.md, "Sessions and
// pins") — a running backup, restore, verify or NBD session that tells
// purge which chunks it relies on. It owns object `session/<sid>`: RADOS
// lock `alive` on it, exclusive, with a duration renewed by the keeper
// thread, says the session lives; the object's data is its pin list (32-byte
// chunk ids, appended). Every append carries the guard "this client still
// holds `alive`" (cls_lock assert_locked), so a session whose lock lapsed —
// purge may already have called it dead — can pin nothing more and fails.
// Readers copy the maps they read to `session/<sid>.<revision>.map`. Both
// happen inside a shared hold of the gate; closing removes the copies and
// the pin list inside one too, then releases the lock.
import Foundation
import Rados
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: `pinnedMaps` and `closed` are read and changed only under `mutex`; the rest is `let`.
final class RadosSession: StoreSession, @unchecked Sendable {
    static let aliveLock = "alive"

    let id: String
    let backend: RadosBackend
    let oid: String
    let lease: RadosLease
    private let mutex = NSLock()
    private var pinnedMaps: [String] = []
    private var closed = false

    init(backend: RadosBackend) throws {
        self.backend = backend
        var rng = SystemRandomNumberGenerator()
        let sid = String(format: "%016llx", rng.next() as UInt64)
        let object = RadosNames.session(sid)
        id = sid
        oid = object
        // Taking the lock creates the object: it never exists unlocked
        // while the session lives.
        let l = try RadosBackend.wrap {
            try RadosLease.tryAcquire(io: backend.io, oid: object, name: RadosSession.aliveLock, kind: .exclusive,
                                      cookie: sid, description: "backy pid \(getpid())", duration: backend.lockDuration)
        }
        guard let l else { throw BackyError(.io, "cannot open session \(sid): \(backend.io.describe(object)) is locked by another client") }
        lease = l
        backend.register(self)
    }

    deinit { close() }

    /// Throws unless the session's lock is certainly still held.
    func check() throws {
        try RadosBackend.wrap { try lease.check() }
    }

    /// Appends ids to the pin list, guarded by the session's lock.
    func pin(_ bytes: [UInt8]) throws {
        mutex.lock(); defer { mutex.unlock() }
        guard !closed else { throw BackyError(.other, "session \(id) is closed") }
        try check()
        let op = RadosWriteOp().assertHeld(lease).append(bytes)
        try RadosBackend.wrap {
            try backend.io.operate(op, on: oid, flags: .fullTry, what: "cannot pin chunks in \(backend.io.describe(oid)) (was the session's lock lost?)")
        }
    }

    func pinThenTest(_ chunkID: ChunkID, in chunks: ChunkObjects, gate: StoreGate) throws -> Bool {
        try gate.shared { () throws -> Bool in
            if !chunkID.isZero {
                var bytes = [UInt8](repeating: 0, count: 32)
                bytes.withUnsafeMutableBytes { chunkID.store(to: $0.baseAddress!) }
                try pin(bytes)
            }
            if let rados = chunks as? RadosChunks { return try rados.existsOrThrow(chunkID) }
            return chunks.exists(chunkID)
        }
    }

    /// Copies the map to `session/<sid>.<revision>.map` inside a shared hold
    /// of the gate (a copy, not a link: RADOS has none).
    func pinMap(_ map: StoreObjectName, revision: String) throws -> StoreObjectName {
        let name = id + "." + revision + ".map"
        try RadosGate(backend: backend).shared {
            mutex.lock(); defer { mutex.unlock() }
            if pinnedMaps.contains(name) { return }
            try check()
            let bytes: [UInt8]
            do {
                bytes = try backend.read(map, limit: Posix.Limit.map)
            } catch let e as BackyError where e.isNoSuchFile {
                throw BackyError(.notFound, "revision \(revision) has no map (removed?)")
            }
            try backend.write(.pinnedMap(name), bytes, durable: true)
            pinnedMaps.append(name)
        }
        return .pinnedMap(name)
    }

    /// Removes the pinned maps and the pin list inside a shared hold of the
    /// gate, then releases the lock.
    func close() {
        mutex.lock(); defer { mutex.unlock() }
        if closed { return }
        closed = true
        let io = backend.io
        let release = {
            for m in self.pinnedMaps { _ = try? io.remove(RadosNames.pinnedMap(m)) }
            _ = try? io.remove(self.oid)
        }
        // After a timeout (RadosStall) the session is left to lapse: purge
        // calls it dead and removes its pins once its lock has lapsed.
        if !backend.stalled, (try? RadosGate(backend: backend).shared(release)) == nil { release() }
        lease.release()
        backend.unregister(self)
    }

    // MARK: dead sessions

    /// Removes the pin lists and pinned maps of sessions whose `alive` lock
    /// is held by nobody (their process died or stalled past the lock's
    /// duration). Safe beside live sessions: a live session's lock is held.
    static func cleanDead(io: RadosIoctx) throws -> SessionCleanup {
        var result = SessionCleanup()
        var sessions: [String] = []
        var maps: [(sid: Substring, name: String)] = []
        try io.forEachObject { name in
            guard name.hasPrefix(RadosNames.sessionPrefix) else { return true }
            let rest = name.dropFirst(RadosNames.sessionPrefix.count)
            if PinSession.isSessionID(rest) {
                sessions.append(String(rest))
            } else {
                let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
                if parts.count == 3, parts[2] == "map", PinSession.isSessionID(parts[0]),
                   RevisionID.isWellFormed(String(parts[1])) {
                    maps.append((parts[0], name))
                }
            }
            return true
        }
        var live = Set<String>()
        for sid in sessions {
            let info = try io.lockInfo(RadosNames.session(sid), name: aliveLock)
            if info.holders.isEmpty {
                // Dead: its pins go. A session that is starting takes its
                // lock before its object exists, so it is never seen here
                // without a holder.
                _ = try io.remove(RadosNames.session(sid))
                result.sessions += 1
            } else {
                live.insert(sid)
            }
        }
        for m in maps where !live.contains(String(m.sid)) {
            // A map copy whose session is gone (or died before its pin
            // list was seen): only if its session is not live now.
            let info = try io.lockInfo(RadosNames.session(String(m.sid)), name: aliveLock)
            if info.holders.isEmpty { _ = try io.remove(m.name) }
        }
        return result
    }
}
