// RadosBackend: the storage seam over a namespace of a Ceph RADOS pool
// (docs/rados.md): a job's chunks, revision metadata, maps, source config,
// verified index and quarantine as objects written whole (write_full), its
// locks, sessions and gate as RADOS advisory locks with a duration renewed
// while held. The local job directory keeps only its `config` (which names
// the store), `backy.log` and caches. Opened by StoreFactory from that
// `config`; created or attached by `init --store rados:POOL[/NS]`.
import Foundation
import Rados
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: only `let`s and `Locked` values (the session table holds weak references).
public final class RadosBackend: StoreBackend, @unchecked Sendable {
    public static let defaultLockDuration: Double = 30

    public let spec: RadosStoreSpec
    let io: RadosIoctx
    public let chunks: ChunkObjects
    /// Seconds a lock (job lock, session, gate hold) outlives a holder that
    /// stopped renewing it.
    public let lockDuration: Double
    private let sessions = Locked<[ObjectIdentifier: Weak]>([:])
    /// The exclusive gate hold of a running purge batch: removals check it.
    let purgeGate = Locked<RadosLease?>(nil)

    struct Weak { weak var session: RadosSession? }

    /// Connects to the cluster and opens the namespace. `opTimeout` bounds
    /// each operation (an OSD that is down is an error, not a hang).
    public init(spec: RadosStoreSpec, access: CephAccess = CephAccess(), environment: CephEnvironment,
                lockDuration: Double = RadosBackend.defaultLockDuration) throws {
        self.spec = spec
        self.lockDuration = lockDuration
        let opTimeout = max(5, lockDuration / 3)
        do {
            let cluster = try RadosBackend.connection(access: access, environment: environment, opTimeout: opTimeout)
            io = try cluster.ioctx(pool: spec.pool, namespace: spec.namespace)
        } catch let e as RadosError {
            throw BackyError(e.kind == .config ? .usage : (e.isNotFound ? .notFound : .io),
                             "cannot open the store \(spec): \(e)")
        }
        chunks = RadosChunks(io: io, purgeGate: purgeGate)
    }

    /// The xattr a new lease holder sets on an incomplete revision of an
    /// earlier run (docs/rados.md, "Leases"): that run can no longer
    /// complete it.
    public static let fenceXattr = "backy.fence"

    /// Fences incomplete revision `id` in the namespace of `io` (by node
    /// `by`); false if the revision is gone.
    @discardableResult
    public static func fence(io: RadosIoctx, revision id: String, by: String) throws -> Bool {
        do {
            try wrap {
                try io.operate(RadosWriteOp().assertExists().setXattr(fenceXattr, by), on: RadosNames.revision(id),
                               flags: .fullForce, what: "cannot fence \(io.describe(RadosNames.revision(id)))")
            }
            return true
        } catch let e as BackyError where e.kind == .notFound {
            return false
        }
    }

    /// Set by a process that opens many jobs (the scheduler): backends then
    /// share one cluster connection per access and timeout instead of
    /// connecting for each job.
    public static let sharedConnections = Locked<[String: RadosCluster]?>(nil)

    static func connection(access: CephAccess, environment: CephEnvironment, opTimeout: Double) throws -> RadosCluster {
        let key = "\(access)|\(environment)|\(opTimeout)"
        if let c = sharedConnections.with({ $0?[key] }) { return c }
        let c = try RadosCluster(access: access, environment: environment, opTimeout: opTimeout)
        sharedConnections.with { if $0 != nil, $0![key] == nil { $0![key] = c } }
        return c
    }

    /// A librados failure as backy's error (ENOENT keeps its errno, so
    /// `isNoSuchFile` works above the seam).
    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as RadosError {
            switch e.kind {
            case .config: throw BackyError(.usage, e.description)
            case .lockLost: throw BackyError(.io, e.description)
            default:
                throw BackyError(e.isNotFound ? .notFound : .io, e.description, errno: e.code == 0 ? nil : e.code)
            }
        }
    }

    public var location: String { spec.description }

    /// An operation of this process timed out within the last lock
    /// duration (RadosStall): best-effort clean-up is skipped.
    public var stalled: Bool { RadosStall.recent(within: lockDuration) }
    public var isWritable: Bool { true }

    /// Writes the marker object if it is missing.
    public func prepare() throws {
        try RadosBackend.wrap { _ = try io.createExclusive(RadosNames.marker, Array(RadosNames.markerContent.utf8)) }
    }

    /// Whether the namespace holds a backy job (its marker).
    public func isInitialized() throws -> Bool {
        try RadosBackend.wrap { try io.stat(RadosNames.marker) != nil }
    }

    // MARK: objects other than chunks

    func objectName(_ object: StoreObjectName) -> String {
        switch object {
        case .revision(let id): return RadosNames.revision(id)
        case .map(let id): return RadosNames.map(id)
        case .legacyData(let id): return "legacy/" + id
        case .pins(let sid): return RadosNames.session(sid)
        case .pinnedMap(let name): return RadosNames.pinnedMap(name)
        case .verifiedIndex: return RadosNames.verified
        case .quarantineReport(let name): return RadosNames.quarantinePrefix + name
        case .damageReport(let name): return RadosNames.damagePrefix + name
        case .sourceConfig: return RadosNames.config
        case .drillRecord: return RadosNames.drill
        }
    }

    public func location(of object: StoreObjectName) -> String { "\(spec)/\(objectName(object))" }

    public func open(_ object: StoreObjectName) throws -> StoredObject? {
        try RadosBackend.wrap { try RadosStoredObject.open(io, objectName(object)) }
    }

    public func read(_ object: StoreObjectName, limit: Int) throws -> [UInt8] {
        let oid = objectName(object)
        let got = try RadosBackend.wrap { try io.readAll(oid, limit: limit) }
        guard let got else { throw BackyError(.notFound, "\(location(of: object)) does not exist", errno: ENOENT) }
        return got.bytes
    }

    /// write_full: readers see the old or the new bytes. An acknowledged
    /// write is durable. A map or revision is written only while every
    /// session of this process still holds its lock: a session whose lock
    /// lapsed may have lost chunks to purge, and must commit nothing.
    /// `crashPoint` (tests) is reached just before the write: RADOS has no
    /// state between "durable" and "in place".
    public func write(_ object: StoreObjectName, _ bytes: [UInt8], durable: Bool, crashPoint: CrashPoint?) throws {
        switch object {
        case .map, .revision:
            try checkSessions()
            try LeaseFence.checkCurrent(location(of: object))
        default: break
        }
        if let c = crashPoint { CrashPoints.reached(c) }
        if case .revision = object, crashPoint == .revBeforeComplete, LeaseFence.current.get != nil {
            // A run under a scheduler's lease completes its revision only if
            // no later lease holder fenced (or removed) it: the OSD checks.
            let op = RadosWriteOp().assertExists().compareXattr(RadosBackend.fenceXattr, .equal, "").writeFull(bytes)
            do {
                try RadosBackend.wrap {
                    try io.operate(op, on: objectName(object), flags: .fullTry, what: "cannot complete \(location(of: object))")
                }
            } catch let e as BackyError where e.kind == .notFound || e.errno == ECANCELED {
                throw BackyError(.locked, "\(location(of: object)): another node took the job's lease and fenced this revision; not completing it")
            }
            return
        }
        try RadosBackend.wrap { try io.writeFull(objectName(object), bytes) }
    }

    public func remove(_ object: StoreObjectName, durable: Bool) throws {
        try RadosBackend.wrap { _ = try io.remove(objectName(object)) }
    }

    /// The object's RADOS version (it changes with every write).
    public func version(of object: StoreObjectName) throws -> (version: ObjectVersion, isPlain: Bool)? {
        guard let st = try RadosBackend.wrap({ try io.stat(objectName(object)) }) else { return nil }
        return (ObjectVersion(Int64(bitPattern: st.version), Int64(st.size), st.mtime, 0), true)
    }

    public func size(of object: StoreObjectName) -> Int64? {
        guard let st = (try? io.stat(objectName(object))) ?? nil else { return nil }
        return Int64(st.size)
    }

    /// The bytes of every object of the job's namespace (librados tells no
    /// allocation per namespace, and a pool's statistics cover every
    /// namespace: a listing, then the objects' stats pipelined, 64 in
    /// flight; replication not counted).
    public func spaceUsed() -> Int64 {
        guard let names = try? io.objects(), let stats = try? io.stats(names) else { return 0 }
        return stats.reduce(Int64(0)) { $0 + Int64($1?.size ?? 0) }
    }

    // MARK: listings

    /// Every object name of the namespace, grouped by what it is.
    struct Listing {
        var revisions: [String] = []
        var ignoredRevisions: [(String, String)] = []
        var maps: [String] = []
        var sessions: [String] = []
        var pinnedMaps: [String] = []
        var quarantineReports: [String] = []
    }

    func listNamespace() throws -> Listing {
        var l = Listing()
        try RadosBackend.wrap {
            try io.forEachObject { name in
                if name.hasPrefix(RadosNames.chunkPrefix) { return true }
                if name.hasPrefix(RadosNames.revisionPrefix) {
                    let id = String(name.dropFirst(RadosNames.revisionPrefix.count))
                    if RevisionID.isWellFormed(id) { l.revisions.append(id) } else { l.ignoredRevisions.append((name, "not a revision id")) }
                } else if name.hasPrefix(RadosNames.mapPrefix) {
                    let id = String(name.dropFirst(RadosNames.mapPrefix.count))
                    if RevisionID.isWellFormed(id) { l.maps.append(id) }
                } else if name.hasPrefix(RadosNames.sessionPrefix) {
                    let rest = name.dropFirst(RadosNames.sessionPrefix.count)
                    if PinSession.isSessionID(rest) {
                        l.sessions.append(String(rest))
                    } else if rest.hasSuffix(".map") {
                        l.pinnedMaps.append(String(rest))
                    }
                } else if name.hasPrefix(RadosNames.quarantinePrefix), name.hasSuffix(".json") {
                    l.quarantineReports.append(String(name.dropFirst(RadosNames.quarantinePrefix.count)))
                }
                return true
            }
        }
        return l
    }

    public func listRevisions() throws -> RevisionListing {
        let l = try listNamespace()
        var out = RevisionListing()
        out.ids = l.revisions
        out.maps = l.maps
        out.ignored = l.ignoredRevisions
        return out
    }

    public func listQuarantineReports() throws -> [String] { try listNamespace().quarantineReports }

    /// Maps and revisions first, then the sessions' pinned maps and pin
    /// lists (one listing of the namespace; the order is that of the
    /// returned array, which is what purge relies on — see docs/rados.md).
    public func listReferenceObjects() throws -> [StoreObjectName] {
        let l = try listNamespace()
        var out: [StoreObjectName] = []
        out += l.maps.map { .map($0) }
        out += l.revisions.map { .revision($0) }
        out += l.pinnedMaps.map { .pinnedMap($0) }
        out += l.sessions.map { .pins($0) }
        return out
    }

    // MARK: revisions

    public func removeRevisionData(_ id: String) throws {
        precondition(RevisionID.isWellFormed(id))
        try RadosBackend.wrap { _ = try io.remove(RadosNames.map(id)) }
    }

    public func finishRemoval(of id: String) throws {}

    public func revisionCompleted(_ revision: Revision) {}

    /// write_full leaves no temporaries.
    public func removeStaleTemporaries() throws {}

    // MARK: quarantine

    /// Copies the chunk to `quarantine/<name>.<stamp>.chunk`, then removes
    /// it (the copy exists before the chunk goes).
    public func quarantine(_ chunk: StoredChunk, stamp: String) throws -> String? {
        guard case .native(let id) = chunk else { return nil }
        let oid = RadosNames.chunk(id)
        let dest = RadosNames.quarantinePrefix + id.hex + "." + stamp + ".chunk"
        return try RadosBackend.wrap {
            guard let got = try io.readAll(oid, limit: 64 << 20) else { return nil }
            try io.writeFull(dest, got.bytes)
            // Only if nobody rewrote the chunk meanwhile (a good copy stays).
            do {
                try io.aioRemove(oid, ifVersion: got.version).check()
            } catch let e as RadosError where e.isNotFound || e.code == ERANGE || e.code == EOVERFLOW {
            }
            return "\(spec)/\(dest)"
        }
    }

    // MARK: locks, sessions, the gate

    public func lock(_ name: JobLockName) -> JobLock {
        RadosJobLock(io: io, oid: RadosNames.lock(name), duration: lockDuration)
    }

    public func openSession() throws -> StoreSession { try RadosSession(backend: self) }

    public func makeGate() -> StoreGate { RadosGate(backend: self) }

    public func cleanDeadSessions() throws -> SessionCleanup {
        try RadosBackend.wrap { try RadosSession.cleanDead(io: io) }
    }

    func register(_ s: RadosSession) {
        sessions.with { $0[ObjectIdentifier(s)] = Weak(session: s) }
    }

    func unregister(_ s: RadosSession) {
        sessions.with { $0[ObjectIdentifier(s)] = nil }
    }

    /// Throws if a session of this process lost its lock.
    func checkSessions() throws {
        let live = sessions.with { $0.values.compactMap(\.session) }
        for s in live { try s.check() }
    }
}
