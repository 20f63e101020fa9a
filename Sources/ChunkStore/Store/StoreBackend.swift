// StoreBackend: the storage seam — where one job's bytes live. Everything
// above it (ChunkStore, ChunkWriter, References, the job operations, NBD
// exports, Mount, the sources) names what it wants — a chunk, a revision's
// metadata or map, a lock, a pin — and never builds a path. The job
// directory (DirectoryBackend) is the first implementation; a backend that
// keeps a job in Ceph RADOS (RadosBackend) implements the same protocols:
// chunk objects written whole (exclusive create or write_full), metadata
// and maps as objects, locks and pins as advisory locks with a duration
// (docs/architecture.md, "The storage seam"). Formats stay above the seam:
// a backend stores and returns bytes; ChunkFileCodec, ChunkMap and Revision
// decode them, the same for every backend.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A stored chunk's name: a native chunk (SHA-256, `.chunk`), or a backy 2.4
/// chunk (MurmurHash3, `.chunk.lzo`; only job directories hold them).
public enum StoredChunk: Hashable, Sendable, CustomStringConvertible {
    case native(ChunkID)
    case legacy(String)

    /// 64 hex digits, or backy 2.4's 32.
    public var name: String {
        switch self {
        case .native(let id): return id.hex
        case .legacy(let h): return h
        }
    }

    public var description: String { name }
}

/// A stored object opened for reading (a chunk, a map, a pin list). Reads
/// are positioned, so a reader reads what it needs where it needs it (a
/// chunk's payload straight into the caller's buffer). Closed when released.
public protocol StoredObject: AnyObject, Sendable {
    /// Its size when it was opened.
    var size: Int { get }
    /// False when something other than a plain object is in its place (a
    /// directory or a device where a file belongs); reading it is refused
    /// by the caller, with its own message.
    var isPlain: Bool { get }
    /// Reads up to `count` bytes at `offset` into `buffer`; fewer only at
    /// the end of the object.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws -> Int
}

public extension StoredObject {
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        try read(into: buffer.baseAddress!, count: buffer.count, at: offset)
    }

    /// The whole object (the caller checked its size).
    func readAll() throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        let n = try bytes.withUnsafeMutableBytes { try read(into: $0, at: 0) }
        if n < bytes.count { bytes.removeLast(bytes.count - n) }
        return bytes
    }
}

/// One chunk as stored: its 16-byte header and its payload (which may lie
/// elsewhere: a raw payload is the caller's own buffer).
public struct EncodedChunk {
    public let header: UnsafeRawBufferPointer
    public let payload: UnsafeRawBufferPointer
    public var size: Int { header.count + payload.count }

    public init(header: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) {
        self.header = header
        self.payload = payload
    }
}

/// A chunk written but not yet visible: it becomes visible whole on
/// `commit` (or never, on `abandon`). The directory backend writes a temp
/// file and commits by fsync + rename; a RADOS backend would commit by
/// waiting for its asynchronous write_full.
public protocol PendingPut: AnyObject, Sendable {
    var id: ChunkID { get }
    /// Stored bytes (header and payload).
    var size: Int { get }
    func commit() throws
    func abandon()
}

/// Removes chunks for purge, one by one, never through anything but the
/// store's own objects.
public protocol ChunkRemover: AnyObject {
    /// Removes the chunk; its size, or nil if it was gone already.
    func remove(_ chunk: StoredChunk) throws -> Int64?
    /// Removes several chunks (a backend may pipeline them); their sizes,
    /// in order, nil where one was gone already.
    func remove(_ chunks: [StoredChunk]) throws -> [Int64?]
}

public extension ChunkObjects {
    func sizes(of chunks: [StoredChunk]) -> [Int64?] { chunks.map { size(of: $0) } }
}

public extension ChunkRemover {
    func remove(_ chunks: [StoredChunk]) throws -> [Int64?] {
        try chunks.map { try remove($0) }
    }
}

/// The chunk objects of a job.
public protocol ChunkObjects: AnyObject, Sendable {
    /// Where the chunks are, for messages.
    var location: String { get }
    /// Where one chunk is, for messages and reports.
    func location(of chunk: StoredChunk) -> String
    /// Creates what a new store needs (idempotent).
    func prepare() throws
    func exists(_ id: ChunkID) -> Bool
    /// The stored size of a chunk (header and payload), nil if it is not
    /// there.
    func size(of chunk: StoredChunk) -> Int64?
    /// The stored sizes of many chunks, in order (a backend may ask for
    /// them all at once); nil where one is not there.
    func sizes(of chunks: [StoredChunk]) -> [Int64?]
    /// Opens a stored chunk. Throws `ChunkReadError` (missing, not a plain
    /// object, cannot be opened).
    func open(_ chunk: StoredChunk) throws -> StoredObject
    /// Starts storing chunk `id`; `session` names the writer's session, so
    /// that what a dead session left unfinished can be told apart and
    /// removed (`removeUnfinished`). The caller commits or abandons it.
    func beginPut(_ id: ChunkID, _ chunk: EncodedChunk, session: String) throws -> PendingPut
    /// Makes committed chunks durable (before a map names them).
    func makeDurable(_ ids: [ChunkID]) throws
    /// Throws unless the store is provably this job's own (purge and
    /// verify act only on such a store).
    func checkOwnership() throws
    /// Every native chunk and every backy 2.4 chunk purge may remove. With
    /// `strict`, anything that makes the store not provably its own is an
    /// error; otherwise it is skipped.
    func list(strict: Bool, _ body: (StoredChunk) throws -> Void) throws
    func makeRemover() throws -> ChunkRemover
    /// Removes the unfinished puts of sessions that are not live; returns
    /// how many.
    func removeUnfinished(isLive: (String) -> Bool) throws -> Int
}

/// Objects of a job other than chunks.
public enum StoreObjectName: Hashable, Sendable {
    /// `<id>.rev`, a revision's metadata.
    case revision(String)
    /// `<id>.map`, a native revision's chunk map.
    case map(String)
    /// `<id>`: a backy 2.x revision's JSON map or raw image.
    case legacyData(String)
    /// A session's pin list (by session id).
    case pins(String)
    /// A map a session pinned (by the name `listReferenceObjects` gave it).
    case pinnedMap(String)
    /// When each chunk was last verified.
    case verifiedIndex
    /// A quarantine report (by file name).
    case quarantineReport(String)
    /// A best-effort restore's damage report (by file name).
    case damageReport(String)
    /// The last restore drill's result (`drill.json`: in RADOS shared by
    /// every attached directory and scheduler, like the revisions).
    case drillRecord
    /// The job's source (`config`: in a job directory the local config
    /// itself; in a RADOS store an object the attached directories share).
    case sourceConfig
}

/// Identifies the version of an object, so a reader can skip what has not
/// changed since it last read it.
public struct ObjectVersion: Hashable, Sendable {
    public var a: Int64, b: Int64, c: Int64, d: Int64
    public init(_ a: Int64, _ b: Int64, _ c: Int64, _ d: Int64) { self.a = a; self.b = b; self.c = c; self.d = d }
}

/// What a listing of revision metadata found.
public struct RevisionListing: Sendable {
    /// Ids of revision objects (well-formed ids only).
    public var ids: [String] = []
    /// Ids of map objects (well-formed ids only), from the same listing:
    /// a map without a revision in `ids` may be an orphan
    /// (`Job.removeOrphanMaps`).
    public var maps: [String] = []
    /// Names that look like revision metadata but cannot be (not a
    /// revision id, not a plain object), with the reason.
    public var ignored: [(name: String, reason: String)] = []
    public init() {}
}

/// The job's locks (backy 2.4's lock files).
public enum JobLockName: String, Sendable {
    /// Held exclusively by a backup (and upgrade, expiry).
    case backup = ".backup"
    /// Held exclusively by purge and verify.
    case purge = ".purge"
    /// Held for a moment while revision metadata is rewritten.
    case meta = ".meta"
}

/// A job lock: dies with its holder (flock; a lock with a duration that is
/// renewed while held).
public protocol JobLock: AnyObject {
    /// Where it is, for messages.
    var path: String { get }
    /// Takes it without waiting; false if another holder has it.
    func tryLock(_ mode: LockMode) throws -> Bool
    /// Takes it, waiting as long as needed.
    func lock(_ mode: LockMode) throws
    func unlock()
}

public enum LockMode: Sendable { case shared, exclusive }

/// The gate between sessions and purge (docs/store-format.md, "Purge and
/// concurrent sessions"): sessions hold it shared for a moment while they
/// pin; purge and quarantine hold it exclusively while they decide and
/// delete. One per thread.
public protocol StoreGate: AnyObject {
    func shared<T>(_ body: () throws -> T) throws -> T
    func exclusive<T>(_ body: () throws -> T) throws -> T
}

/// A running backup, restore, verify or NBD session: what it pins stays
/// through any purge until it closes or dies.
public protocol StoreSession: AnyObject, Sendable {
    var id: String { get }
    /// Pins chunk `id`, then tells whether the store holds it — both inside
    /// one shared hold of `gate`, so that a purge batch either sees the pin
    /// or has finished its deletions before the test. A writer calls this
    /// for every chunk it is about to rely on, before it relies on it.
    func pinThenTest(_ id: ChunkID, in chunks: ChunkObjects, gate: StoreGate) throws -> Bool
    /// Keeps a revision's map (`.map(id)` or a backy 2.4 `.legacyData(id)`)
    /// referenced until the session ends, even if the revision is removed
    /// meanwhile (inside a shared hold of the gate), and returns the name
    /// of the pinned copy to read the map from. Throws `.notFound` if the
    /// map is gone.
    func pinMap(_ map: StoreObjectName, revision: String) throws -> StoreObjectName
    /// Ends the session: drops its pins (inside a shared hold of the gate).
    func close()
}

/// What cleaning up dead sessions removed.
public struct SessionCleanup: Sendable {
    public var sessions = 0
    public var tempFiles = 0
    public init() {}
}

/// Where a job's bytes live.
public protocol StoreBackend: AnyObject, Sendable {
    /// Where the store is, for messages.
    var location: String { get }
    var chunks: ChunkObjects { get }
    /// False where nothing can be written (a job on read-only media):
    /// readers then go on without pins (nothing can purge it either).
    var isWritable: Bool { get }

    /// Creates what a new job needs (idempotent).
    func prepare() throws

    // MARK: objects other than chunks

    func location(of object: StoreObjectName) -> String
    /// Opens an object for reading; nil if it does not exist. Throws if it
    /// exists but cannot be opened.
    func open(_ object: StoreObjectName) throws -> StoredObject?
    /// Reads a whole object of at most `limit` bytes. A missing one throws
    /// a `BackyError` whose `isNoSuchFile` is true.
    func read(_ object: StoreObjectName, limit: Int) throws -> [UInt8]
    /// Replaces an object atomically (durably when asked). `crashPoint`
    /// (tests only, CrashPoints) is reached once the bytes are durable and
    /// before they replace the object.
    func write(_ object: StoreObjectName, _ bytes: [UInt8], durable: Bool, crashPoint: CrashPoint?) throws
    /// Removes an object if it exists.
    func remove(_ object: StoreObjectName, durable: Bool) throws
    /// The object's version and whether it is plain; nil if it is really
    /// gone. Throws if it cannot be told (a dangling link, an I/O error):
    /// unreadable is not absent.
    func version(of object: StoreObjectName) throws -> (version: ObjectVersion, isPlain: Bool)?
    /// The object's size, nil if it is not there (for what removing it
    /// would free).
    func size(of object: StoreObjectName) -> Int64?
    /// Space the whole store takes where it lives (allocated bytes: chunks,
    /// maps, revisions, quarantine, and what else the backend keeps).
    func spaceUsed() -> Int64

    // MARK: listings

    func listRevisions() throws -> RevisionListing
    /// File names of quarantine reports.
    func listQuarantineReports() throws -> [String]
    /// What purge must read to know every referenced chunk, listed in this
    /// order: revisions' maps, metadata and backy 2.4 data first, then the
    /// sessions' pin lists and pinned maps (docs/store-format.md, "Purge
    /// and concurrent sessions", relies on the order).
    func listReferenceObjects() throws -> [StoreObjectName]

    // MARK: revisions

    /// Removes everything of a revision except its metadata (map, backy
    /// 2.4 data, leftovers of interrupted writes).
    func removeRevisionData(_ id: String) throws
    /// After a revision's metadata is removed: makes the removal durable
    /// and drops what pointed at the revision.
    func finishRemoval(of id: String) throws
    /// A revision became complete (the directory points `last` at it).
    func revisionCompleted(_ revision: Revision)
    /// Removes leftovers of metadata writes whose writer is gone.
    func removeStaleTemporaries() throws

    // MARK: quarantine

    /// Moves a stored chunk aside (it is no longer found as a chunk);
    /// returns where it went, or nil if it was not there.
    func quarantine(_ chunk: StoredChunk, stamp: String) throws -> String?

    // MARK: locks, sessions, the gate

    func lock(_ name: JobLockName) -> JobLock
    func openSession() throws -> StoreSession
    func makeGate() -> StoreGate
    /// Removes the pins and unfinished chunks of sessions that died.
    func cleanDeadSessions() throws -> SessionCleanup
}

public extension StoreBackend {
    /// Replaces an object atomically (durably when asked).
    func write(_ object: StoreObjectName, _ bytes: [UInt8], durable: Bool) throws {
        try write(object, bytes, durable: durable, crashPoint: nil)
    }

    /// A map object read whole and checked: its header against its size
    /// before anything is allocated, then its checksum.
    func readMap(_ name: StoreObjectName) throws -> ChunkMap {
        let loc = location(of: name)
        guard let o = try open(name) else {
            throw BackyError(.notFound, "\(loc): map file is missing", errno: ENOENT)
        }
        return try ChunkMap.read(from: o, location: loc)
    }

    /// A map's header, checked against the object's size.
    func readMapHeader(_ name: StoreObjectName) throws -> ChunkMap.Header {
        let loc = location(of: name)
        guard let o = try open(name) else {
            throw BackyError(.notFound, "\(loc): map file is missing", errno: ENOENT)
        }
        return try ChunkMap.readHeader(from: o, location: loc)
    }

    /// A backy 2.4 JSON map.
    func readLegacyMap(_ name: StoreObjectName) throws -> LegacyMap {
        let loc = location(of: name)
        let bytes: [UInt8]
        do {
            bytes = try read(name, limit: Posix.Limit.map)
        } catch let e as BackyError where e.isNoSuchFile {
            throw BackyError(.notFound, e.message, errno: e.errno)
        }
        return try LegacyMap.parse(bytes, path: loc)
    }
}
