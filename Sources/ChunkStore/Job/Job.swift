// Job: one backup job: its local directory (`config`, `backy.log`) and the
// store that holds its revisions and chunks (a StoreBackend, opened by
// StoreFactory; today always the job directory itself). Scans revisions
// (only well-formed ids are revisions; other metadata is ignored and
// reported, never removed), checks a revision's map for damage, opens a
// revision's image (pinned for purge by a session), rewrites revision
// metadata under the `.meta` lock, removes revisions and incomplete
// leftovers in an order that keeps every complete revision whole.
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

public final class Job: Sendable {
    /// The local job directory (a real path).
    public let path: String
    /// Where the job's bytes live.
    public let backend: StoreBackend
    /// The job's chunks.
    public let store: ChunkStore
    public let log: Logger

    public var configPath: String { path + "/config" }
    public var name: String { (path as NSString).lastPathComponent }

    /// Opens an existing job directory; fails if it has no `config`.
    public init(path given: String, logger: Logger = Logger(label: "backy")) throws {
        guard let real = Posix.realpath(given), Posix.isDirectory(real) else {
            throw BackyError(.notFound, "job directory \(given) does not exist")
        }
        path = real
        log = logger
        let configPath = real + "/config"
        guard Posix.exists(configPath) else {
            throw BackyError(.notFound, "\(real) is not a backy job directory (it has no config file)")
        }
        localConfig = try Job.parseConfig(try Posix.readFile(configPath, limit: Posix.Limit.metadata), source: configPath)
        backend = try StoreFactory.open(jobPath: real, config: localConfig)
        store = ChunkStore(chunks: backend.chunks)
    }

    /// The local `config` as read when the job was opened.
    public let localConfig: YAMLMap

    /// Where the source description is (the local config, or the store's
    /// `config` object of a RADOS job), for messages.
    public var sourceConfigLocation: String { backend.location(of: .sourceConfig) }

    public static func parseConfig(_ bytes: [UInt8], source: String) throws -> YAMLMap {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw BackyError(.usage, "\(source): not UTF-8 text")
        }
        let v = try YAML.parse(text, source: source)
        guard let m = v.map else { throw BackyError(.usage, "\(source): expected a YAML mapping") }
        return m
    }

    /// The source description from `config` (a RADOS job's from the
    /// store's `config` object): backy 2.4's flat map, or 2.5's
    /// `{source: {...}, schedule: {...}}`.
    public func sourceConfig() throws -> YAMLMap {
        let loc = sourceConfigLocation
        let m = try Job.parseConfig(try backend.read(.sourceConfig, limit: Posix.Limit.metadata), source: loc)
        if m["type"] == nil, let src = m["source"]?.map { return src }
        return m
    }

    // MARK: revisions

    /// The object holding a revision's chunk list, which a reader pins to
    /// keep its chunks: the map of a native revision, backy 2.4's JSON map;
    /// nil for a raw backy 2.x image (it has no chunks).
    public func pinnableMap(_ rev: Revision) -> StoreObjectName? {
        switch rev.backend {
        case .native: return .map(rev.id)
        case .legacyChunked: return .legacyData(rev.id)
        default: return nil
        }
    }

    /// Where a revision's data is (its map, or backy 2.4's `<id>`), for
    /// `backy find`.
    public func dataLocation(_ rev: Revision) -> String {
        backend.location(of: rev.backend == .native ? .map(rev.id) : .legacyData(rev.id))
    }

    /// Reads and parses one revision's metadata.
    public func loadRevision(_ id: String) throws -> Revision {
        let bytes = try backend.read(.revision(id), limit: Posix.Limit.metadata)
        let where_ = backend.location(of: .revision(id))
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw BackyError(.corrupt, "\(where_): not UTF-8 text")
        }
        return try Revision.parse(text, path: where_)
    }

    /// What a scan found: the revisions, and the `.rev` files it ignored
    /// (with the reason), which are never used, changed or removed.
    public struct ScanResult: Sendable {
        public var revisions: [Revision] = []
        public var ignored: [(name: String, reason: String)] = []
        /// The listing the scan read (every well-formed revision and map
        /// id, readable or not).
        public var listing = RevisionListing()

        /// One line naming the ignored files (nil if none).
        public var ignoredSummary: String? {
            guard let first = ignored.first else { return nil }
            let more = ignored.count > 1 ? " (and \(ignored.count - 1) more)" : ""
            return "ignoring \(ignored.count) revision file(s) that are not valid revisions: \(first.name): \(first.reason)\(more)"
        }
    }

    /// All revisions, oldest first (by timestamp, then id). Symlinks such as
    /// `last.rev` are skipped; a uuid found twice counts once. Only files
    /// named `<id>.rev` with a well-formed id (`RevisionID.isWellFormed`)
    /// whose content carries the same id are revisions; anything else is
    /// ignored and named in `ignored`.
    public func scanReport() throws -> ScanResult {
        var seen = Set<String>()
        var out = ScanResult()
        let listing = try backend.listRevisions()
        out.listing = listing
        out.ignored = listing.ignored
        for stem in listing.ids {
            let name = stem + ".rev"
            let r: Revision
            do {
                r = try loadRevision(stem)
            } catch {
                out.ignored.append((name, "\(error)"))
                continue
            }
            if r.id != stem {
                out.ignored.append((name, "its uuid is \(r.id)"))
                continue
            }
            if seen.insert(r.id).inserted { out.revisions.append(r) }
        }
        out.revisions.sort { ($0.timestamp, $0.id) < ($1.timestamp, $1.id) }
        out.ignored.sort { $0.name < $1.name }
        return out
    }

    /// The last warning about ignored files (each is logged once per
    /// process, not at every scan of one command).
    private let warnedIgnored = Locked<String?>(nil)

    /// `scanReport`'s revisions; ignored files are logged in one warning.
    public func scan() throws -> [Revision] { try scanLogged().revisions }

    /// `scanReport`, its ignored files logged in one warning.
    private func scanLogged() throws -> ScanResult {
        let r = try scanReport()
        if let line = r.ignoredSummary {
            let first = warnedIgnored.with { w -> Bool in defer { w = line }; return w != line }
            if first { log.warning("\(name): \(line)") }
        }
        return r
    }

    /// Complete revisions, oldest first.
    public func history() throws -> [Revision] { try scan().filter { $0.isComplete } }

    /// Why a complete revision cannot be read, from a cheap check of its
    /// files (the map's header and size, not its checksum); nil if it looks
    /// whole.
    public func damage(of rev: Revision) -> String? {
        guard rev.isComplete else { return nil }
        switch rev.backend {
        case .native:
            do { _ = try backend.readMapHeader(.map(rev.id)) } catch { return "\(error)" }
        case .legacyChunked, .cowfile:
            let data = StoreObjectName.legacyData(rev.id)
            let p = backend.location(of: data)
            guard let v = (try? backend.version(of: data)) ?? nil else {
                return "\(p): \(rev.backend == .cowfile ? "raw image" : "JSON map") is missing"
            }
            guard v.isPlain else { return "\(p) is not a regular file" }
            if rev.backend == .legacyChunked {
                var head = [UInt8](repeating: 0, count: 2)
                let n = (try? backend.open(data).map { o in try head.withUnsafeMutableBytes { try o.read(into: $0, at: 0) } }) ?? nil
                if n != 2 || head != [UInt8(ascii: "{"), UInt8(ascii: "\"")] { return "\(p) is not a JSON chunk map" }
            }
        case .unknown(let s):
            return "unknown backend type '\(s)'"
        }
        return nil
    }

    /// The chunk map of a revision.
    public func loadMap(_ rev: Revision) throws -> ChunkMap {
        switch rev.backend {
        case .native:
            return try backend.readMap(.map(rev.id))
        case .legacyChunked, .cowfile:
            throw BackyError(.usage, "revision \(rev.id) was written by backy 2.4 (\(rev.backend.name)); run `backy upgrade` to convert it")
        case .unknown(let s):
            throw BackyError(.usage, "revision \(rev.id) has an unknown backend type '\(s)'")
        }
    }

    /// Random access to a complete revision's image, its map read from
    /// `mapObject` (a pinned copy; by default the revision's own).
    public func openImage(_ rev: Revision, mapObject: StoreObjectName? = nil) throws -> ImageReader {
        switch rev.backend {
        case .native:
            return NativeImage(map: try backend.readMap(mapObject ?? .map(rev.id)), store: store)
        case .legacyChunked:
            return LegacyImage(map: try backend.readLegacyMap(mapObject ?? .legacyData(rev.id)), store: store)
        case .cowfile:
            guard let o = try backend.open(.legacyData(rev.id)) else {
                throw BackyError(.notFound, "\(backend.location(of: .legacyData(rev.id))): raw image of a cowfile revision is missing")
            }
            return CowfileImage(object: o, name: rev.id)
        case .unknown(let s):
            throw BackyError(.usage, "revision \(rev.id) has an unknown backend type '\(s)'")
        }
    }

    /// Opens a complete revision's image for a reader that must keep its
    /// chunks while it runs: pins the revision's map in `session` and reads
    /// the pinned copy (it stays even if the revision is removed
    /// meanwhile). Without a session (a job on read-only media) the map is
    /// read in place. A map that is gone is `.notFound`.
    public func openPinnedImage(_ rev: Revision, session: StoreSession?) throws -> ImageReader {
        guard let session, let map = pinnableMap(rev) else { return try openImage(rev) }
        let pinned = try session.pinMap(map, revision: rev.id)
        return try openImage(rev, mapObject: pinned)
    }

    /// Removes every file of a revision. It is first marked incomplete
    /// (`stats.duration` dropped, durably) and `<id>.rev` goes last, so a
    /// crash in the middle leaves an incomplete revision that the next
    /// backup removes, and a complete revision always has its map (purge
    /// relies on that). A `.rev` that cannot be read goes first.
    public func removeRevision(_ id: String) throws {
        guard RevisionID.isWellFormed(id) else {
            throw BackyError(.usage, "refusing to remove '\(id)': not a revision id")
        }
        do {
            var rev = try loadRevision(id)
            if rev.isComplete {
                rev.stats["duration"] = nil
                try save(rev)
            }
        } catch let e as BackyError where e.isNoSuchFile {
        } catch let e as BackyError where e.kind == .corrupt || e.kind == .usage {
            try backend.remove(.revision(id), durable: false)
        }
        try backend.removeRevisionData(id)
        try backend.remove(.revision(id), durable: false)
        try backend.finishRemoval(of: id)
    }

    /// Removes revisions without `stats.duration` (left by a crash or a failed
    /// backup). Returns their ids.
    @discardableResult
    public func removeIncomplete() throws -> [String] {
        var removed: [String] = []
        let scanned = try scanLogged()
        for r in scanned.revisions where !r.isComplete {
            log.info("Removing incomplete revision \(r.id)")
            try removeRevision(r.id)
            removed.append(r.id)
        }
        // The same listing names the maps (in RADOS one listing of the
        // namespace serves both).
        try removeOrphanMaps(scanned.listing, skipping: Set(removed))
        // Leftovers of interrupted metadata writes whose writer is gone.
        try backend.removeStaleTemporaries()
        return removed
    }

    /// Removes maps whose revision is gone (their chunks would stay
    /// referenced for ever): left by a `copy` killed between the map and
    /// the revision, or, in RADOS, by a late write of a run that lost its
    /// lease after the next holder removed its revision (docs/rados.md).
    /// Only under the job's backup lock: a backup creates its revision
    /// before its map, and a copy holds the lock, so no writer is between
    /// the two. `listing` is a listing taken under that lock; a map whose
    /// revision it lacks is looked up again (a revision listed after its
    /// map). `skipping`: revisions removed since the listing. Returns the
    /// revision ids whose maps went.
    @discardableResult
    public func removeOrphanMaps(_ listing: RevisionListing, skipping: Set<String> = []) throws -> [String] {
        let revisions = Set(listing.ids).union(skipping)
        var removed: [String] = []
        for id in listing.maps where !revisions.contains(id) {
            let map = backend.location(of: .map(id))
            do {
                guard try backend.version(of: .revision(id)) == nil else { continue }
                log.info("Removing \(map): its revision is gone")
                try backend.remove(.map(id), durable: false)
                removed.append(id)
            } catch {
                // Left for the operator; the backup goes on.
                log.warning("Cannot remove \(map) (its revision is gone): \(error)")
            }
        }
        return removed
    }

    /// The pid in the name of a metadata temp file: `<name>.tmp-<pid>`
    /// (`last` links) or `<name>.tmp-<pid>-<random>` (atomic writes); nil
    /// for any other name.
    public static func tempFileWriter(_ name: String) -> Int32? {
        guard let r = name.range(of: ".tmp-", options: .backwards) else { return nil }
        let rest = name[r.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
        guard rest.count == 1 || rest.count == 2, let pid = Int32(rest[0]), pid > 0,
              rest[0].allSatisfy({ $0.isASCII && $0.isNumber }),
              rest.count == 1 || (!rest[1].isEmpty && rest[1].allSatisfy { $0.isASCII && $0.isNumber }) else { return nil }
        return pid
    }

    /// Tells the store that `rev` is the newest complete revision (the
    /// directory points `last` and `last.rev` at it).
    public func updateLastLinks(_ rev: Revision) {
        backend.revisionCompleted(rev)
    }

    /// Rewrites a revision's metadata (atomically; durably when asked).
    public func save(_ rev: Revision, durable: Bool = true, crashPoint: CrashPoint? = nil) throws {
        try backend.write(.revision(rev.id), Array(rev.yaml().utf8), durable: durable, crashPoint: crashPoint)
    }

    /// Rewrites revisions under the job's metadata lock `.meta` (held only
    /// for the read-modify-write), so concurrent distrust, verify, expiry and
    /// forget never lose each other's changes.
    public func updateRevisions(_ ids: Set<String>, _ change: (inout Revision) throws -> Void) throws {
        guard !ids.isEmpty else { return }
        let lock = self.lock(.meta)
        try lock.lock(.exclusive)
        defer { lock.unlock() }
        for id in ids.sorted() {
            var rev: Revision
            do {
                rev = try loadRevision(id)
            } catch let e as BackyError where e.isNoSuchFile {
                continue
            }
            let before = rev
            try change(&rev)
            if rev != before { try save(rev) }
        }
    }

    /// Runs `body` holding the metadata lock `.meta`.
    public func withMetadataLock<T>(_ body: () throws -> T) throws -> T {
        let lock = self.lock(.meta)
        try lock.lock(.exclusive)
        defer { lock.unlock() }
        return try body()
    }

    // MARK: locks

    public func lock(_ name: JobLockName) -> JobLock { backend.lock(name) }
}
