// JobLeases.swift — what several schedulers share about RADOS jobs
// (docs/rados.md, "Leases"; README.md, "Running several backup servers"):
// one cluster connection per scheduler; per job the lease (exclusive RADOS
// lock `lease` on the object `lease` of the job's namespace, duration
// `lease:`, cookie "NODE/RANDOM", renewed by the connection's keeper thread
// while a run lasts) and the job's run record (that object's data, JSON:
// which node ran the job last, when, whether it worked, failures in a row,
// the last error), written at the end of a run by a write op that the OSD
// refuses unless the writer still holds the lease; and the lease feed, the
// pipe through which a backup child learns until when the lease is held
// (ChunkStore's LeaseFence).

import ChunkStore
import Foundation
import Logging
import Rados
#if canImport(Glibc)
import Glibc
#endif

/// The data of a job's `lease` object: its last run, whichever node ran it.
public struct RunRecord: Equatable, Sendable, Codable {
    public var node: String
    /// Seconds since the epoch.
    public var started: Double
    public var finished: Double
    public var ok: Bool
    /// Failed runs in a row (0 after a success).
    public var failures: Int
    public var error: String?

    static let limit = 64 << 10

    func encoded() -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return Array((try? e.encode(self)) ?? Data())
    }

    /// nil for no bytes; throws for bytes that are not a record.
    static func decode(_ bytes: [UInt8], what: String) throws -> RunRecord? {
        if bytes.isEmpty { return nil }
        do {
            return try JSONDecoder().decode(RunRecord.self, from: Data(bytes))
        } catch {
            throw BackyError(.corrupt, "\(what): not a run record (\(bytes.count) bytes)")
        }
    }
}

// @unchecked Sendable: the connection and the I/O contexts are created and read under `mutex`; librados is thread-safe.
final class JobLeases: @unchecked Sendable {
    static let object = "lease"
    static let lockName = "lease"

    let node: String
    /// Seconds.
    let duration: Double
    private let mutex = NSLock()
    private var cluster: RadosCluster?
    private var contexts: [String: RadosIoctx] = [:]
    /// Lock, unlock, renewal and record operations since start (bench).
    let operations = Locked<Int>(0)

    init(node: String, duration: Double) {
        self.node = node
        self.duration = duration
    }

    /// The I/O context of `spec`'s namespace (connecting on first use; a
    /// failed connection is tried again at the next call).
    func io(_ spec: RadosStoreSpec) throws -> RadosIoctx {
        mutex.lock()
        defer { mutex.unlock() }
        let key = spec.description
        if let io = contexts[key] { return io }
        let c: RadosCluster
        if let have = cluster {
            c = have
        } else {
            do {
                c = try RadosCluster(access: CephAccess(), environment: StoreFactory.cephEnvironment, opTimeout: max(2, duration / 3))
            } catch {
                throw BackyError(.io, "cannot reach the Ceph cluster for the job leases: \(error)")
            }
            cluster = c
        }
        let io = try rados { try c.ioctx(pool: spec.pool, namespace: spec.namespace) }
        contexts[key] = io
        return io
    }

    /// Drops the connection and its I/O contexts (at the scheduler's end,
    /// once nothing runs): the last reference gone, librados shuts the
    /// client down and joins its threads before the process exits, whose
    /// static destructors those threads would otherwise race (a SIGSEGV
    /// in MonClient::tick at exit, seen under TSan).
    func close() {
        mutex.lock()
        contexts.removeAll()
        cluster = nil
        mutex.unlock()
    }

    func forget(_ spec: RadosStoreSpec) {
        mutex.lock()
        contexts[spec.description] = nil
        mutex.unlock()
    }

    private func rados<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as RadosError {
            throw BackyError(.io, e.description)
        }
    }

    enum Outcome {
        case taken(RadosLease)
        /// Another node holds it (its name, as far as the cookie tells).
        case held(String)
    }

    /// Takes the job's lease once (never waits).
    func take(_ spec: RadosStoreSpec) throws -> Outcome {
        let io = try io(spec)
        var random = [UInt8](repeating: 0, count: 8)
        for i in random.indices { random[i] = UInt8.random(in: 0...255) }
        let cookie = node + "/" + random.map { String(format: "%02x", $0) }.joined()
        operations.with { $0 += 1 }
        if let l = try rados({ try RadosLease.tryAcquire(io: io, oid: Self.object, name: Self.lockName, kind: .exclusive,
                                                         cookie: cookie, description: node, duration: duration) }) {
            return .taken(l)
        }
        return .held((try? holder(spec)) ?? nil ?? "another node")
    }

    /// The node that holds the job's lease now, if any.
    func holder(_ spec: RadosStoreSpec) throws -> String? {
        let io = try io(spec)
        operations.with { $0 += 1 }
        let info = try rados { try io.lockInfo(Self.object, name: Self.lockName) }
        guard let h = info.holders.first else { return nil }
        return String(h.cookie.split(separator: "/", maxSplits: 1).first ?? "?")
    }

    /// The job's run record (nil before its first run).
    func record(_ spec: RadosStoreSpec) throws -> RunRecord? {
        let io = try io(spec)
        operations.with { $0 += 1 }
        let got = try rados { try io.readAll(Self.object, limit: RunRecord.limit) }
        return try RunRecord.decode(got?.bytes ?? [], what: "\(spec)/\(Self.object)")
    }

    /// Writes the record while (and only if) `lease` is still held.
    func write(_ r: RunRecord, lease: RadosLease) throws {
        operations.with { $0 += 1 }
        try rados {
            try lease.io.operate(RadosWriteOp().assertHeld(lease).writeFull(r.encoded()), on: Self.object,
                                 what: "cannot write the run record \(lease.io.describe(Self.object))")
        }
    }
}

/// Tells a backup child until when the lease is held: one line
/// "UNTIL DURATION\n" (CLOCK_BOOTTIME seconds) about every second while the
/// lease is held, on a pipe the child inherits as fd 3 (`--lease-fd 3`).
final class LeaseFeed: @unchecked Sendable {
    /// The end the child gets (close-on-exec here; dup2'ed to 3 in the child).
    let childFD: Int32
    private let writeFD: Int32
    private let lease: RadosLease
    private let cond = NSCondition()
    private var stopped = false
    private var done = false

    init(lease: RadosLease) throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw BackyError(.io, "cannot make the lease pipe: \(String(cString: strerror(errno)))") }
        // Out of the way of the descriptors the child gets (0-3).
        let r = fcntl(fds[0], F_DUPFD_CLOEXEC, 10)
        close(fds[0])
        childFD = r
        writeFD = fds[1]
        _ = fcntl(writeFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeFD, F_SETFL, fcntl(writeFD, F_GETFL) | O_NONBLOCK)
        self.lease = lease
        send()
        let t = Thread { [self] in loop() }
        t.name = "backy-lease-feed"
        t.start()
    }

    private func send() {
        let left = lease.secondsLeft
        guard left > 0 else { return }
        let line = String(format: "%.3f %.3f\n", LeaseClock.now() + left, lease.duration)
        _ = line.withCString { write(writeFD, $0, strlen($0)) }
    }

    private func loop() {
        cond.lock()
        while !stopped {
            cond.unlock()
            send()
            cond.lock()
            if !stopped { _ = cond.wait(until: Date().addingTimeInterval(min(1, lease.duration / 6))) }
        }
        done = true
        cond.broadcast()
        cond.unlock()
        close(writeFD)
    }

    /// Stops feeding (the child sees the pipe close).
    func stop() {
        cond.lock()
        stopped = true
        cond.broadcast()
        while !done { cond.wait() }
        cond.unlock()
        close(childFD)
    }
}
