// Job: one job directory in backy 2.4's shape: `config`, `<id>.rev` per
// revision, `<id>.map` per native revision, `chunks/`, lock files, `last`
// and `last.rev` symlinks. Scans revisions, resolves revision specs, removes
// revisions and incomplete leftovers.
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

public final class Job: @unchecked Sendable {
    public let path: String
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
        store = ChunkStore(root: real + "/chunks")
        log = logger
        guard Posix.exists(configPath) else {
            throw BackyError(.notFound, "\(real) is not a backy job directory (it has no config file)")
        }
    }

    /// Creates the job directory (if needed) and writes `config`; refuses to
    /// overwrite an existing config.
    @discardableResult
    public static func initialize(path: String, source: YAMLMap, logger: Logger = Logger(label: "backy")) throws -> Job {
        if !Posix.isDirectory(path) {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw BackyError(.io, "cannot create job directory \(path): \(error.localizedDescription)")
            }
        }
        let cfg = path + "/config"
        if Posix.exists(cfg) {
            throw BackyError(.usage, "Refusing to initialize with existing config \(cfg).")
        }
        try writeConfig(path: cfg, source: source)
        let job = try Job(path: path, logger: logger)
        try job.store.create()
        return job
    }

    /// Writes a job `config` (flow style, one line, keys sorted, like 2.4).
    public static func writeConfig(path: String, source: YAMLMap) throws {
        try Posix.writeFileAtomically(path, Array((YAML.flow(.map(source)) + "\n").utf8), mode: 0o440)
    }

    /// The source description from `config`: backy 2.4's flat map, or 2.5's
    /// `{source: {...}, schedule: {...}}`.
    public func sourceConfig() throws -> YAMLMap {
        let bytes = try Posix.readFile(configPath)
        let text = String(decoding: bytes, as: UTF8.self)
        let v = try YAML.parse(text, source: configPath)
        guard let m = v.map else { throw BackyError(.usage, "\(configPath): expected a YAML mapping") }
        if m["type"] == nil, let src = m["source"]?.map { return src }
        return m
    }

    // MARK: revisions

    public func revPath(_ id: String) -> String { path + "/" + id + ".rev" }
    public func mapPath(_ id: String) -> String { path + "/" + id + ".map" }
    /// The file a reader pins (hard-links) to keep a revision's chunks.
    public func pinnableMapPath(_ rev: Revision) -> String? {
        switch rev.backend {
        case .native: return mapPath(rev.id)
        case .legacyChunked: return legacyImagePath(rev.id)
        default: return nil
        }
    }

    /// backy 2.4's image or JSON map file of a legacy revision.
    public func legacyImagePath(_ id: String) -> String { path + "/" + id }

    /// All revisions, oldest first (by timestamp, then id). Symlinks such as
    /// `last.rev` are skipped; a uuid found twice counts once.
    public func scan() throws -> [Revision] {
        var seen = Set<String>()
        var revs: [Revision] = []
        for name in try Posix.listDirectory(path) where name.hasSuffix(".rev") && !name.hasPrefix(".") {
            let p = path + "/" + name
            var st = stat()
            guard lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            let r: Revision
            do {
                r = try Revision.load(path: p)
            } catch {
                log.warning("Ignoring unreadable revision file \(name): \(error)")
                continue
            }
            if r.id + ".rev" != name {
                log.warning("Ignoring \(name): its uuid is \(r.id)")
                continue
            }
            if seen.insert(r.id).inserted { revs.append(r) }
        }
        revs.sort { ($0.timestamp, $0.id) < ($1.timestamp, $1.id) }
        return revs
    }

    /// Complete revisions, oldest first.
    public func history() throws -> [Revision] { try scan().filter { $0.isComplete } }

    /// Resolves a revision spec (backy 2.4 §2.3): a number counts back from
    /// the newest complete revision (0 = newest); an exact id; `last` or
    /// `latest`; a tag (newest complete revision carrying it).
    public static func find(_ spec: String, in all: [Revision]) throws -> Revision {
        let complete = all.filter { $0.isComplete }
        let s = spec.trimmingCharacters(in: .whitespaces)
        if s.isEmpty { throw BackyError(.notFound, "empty revision spec") }
        if let n = Int(s) {
            if n < 0 { throw BackyError(.notFound, "unknown revision '\(spec)' (negative number)") }
            if n < complete.count { return complete[complete.count - 1 - n] }
        }
        if let r = all.first(where: { $0.id == s }) { return r }
        if s == "last" || s == "latest" {
            if let r = complete.last { return r }
            throw BackyError(.notFound, "unknown revision '\(spec)': the job has no complete revision")
        }
        if let r = complete.last(where: { $0.tags.contains(s) }) { return r }
        throw BackyError(.notFound, "unknown revision '\(spec)'")
    }

    public func find(_ spec: String) throws -> Revision { try Job.find(spec, in: try scan()) }

    /// Like `find`, but the revision must be complete.
    public func findComplete(_ spec: String) throws -> Revision {
        let r = try find(spec)
        guard r.isComplete else { throw BackyError(.notFound, "revision \(r.id) is incomplete (its backup did not finish)") }
        return r
    }

    /// The chunk map of a revision.
    public func loadMap(_ rev: Revision) throws -> ChunkMap {
        switch rev.backend {
        case .native:
            return try ChunkMap.read(path: mapPath(rev.id))
        case .legacyChunked, .cowfile:
            throw BackyError(.usage, "revision \(rev.id) was written by backy 2.4 (\(rev.backend.name)); run `backy upgrade` to convert it")
        case .unknown(let s):
            throw BackyError(.usage, "revision \(rev.id) has an unknown backend type '\(s)'")
        }
    }

    /// Random access to a complete revision's image.
    public func openImage(_ rev: Revision) throws -> ImageReader {
        switch rev.backend {
        case .native:
            return NativeImage(map: try loadMap(rev), store: store)
        case .legacyChunked:
            return LegacyImage(map: try LegacyMap.read(path: legacyImagePath(rev.id)), store: store)
        case .cowfile:
            return try CowfileImage(path: legacyImagePath(rev.id))
        case .unknown(let s):
            throw BackyError(.usage, "revision \(rev.id) has an unknown backend type '\(s)'")
        }
    }

    /// Removes every file of a revision (`<id>.rev` last, so a crash in the
    /// middle leaves an incomplete revision that the next backup removes).
    public func removeRevision(_ id: String) throws {
        precondition(RevisionID.isSafe(id))
        for name in try Posix.listDirectory(path) where name.hasPrefix(id) && name != id + ".rev" {
            let rest = name.dropFirst(id.count)
            guard rest.isEmpty || rest.hasPrefix(".") else { continue }
            try Posix.unlinkIfPresent(path + "/" + name)
        }
        try Posix.unlinkIfPresent(revPath(id))
        try Posix.fsyncDirectory(path)
        // Drop symlinks that pointed at it.
        for l in ["last", "last.rev"] {
            let p = path + "/" + l
            var st = stat()
            if lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK, !Posix.exists(p) {
                Glibc.unlink(p)
            }
        }
    }

    /// Removes revisions without `stats.duration` (left by a crash or a failed
    /// backup). Returns their ids.
    @discardableResult
    public func removeIncomplete() throws -> [String] {
        var removed: [String] = []
        for r in try scan() where !r.isComplete {
            log.info("Removing incomplete revision \(r.id)")
            try removeRevision(r.id)
            removed.append(r.id)
        }
        // Temp files of interrupted metadata writes.
        for name in try Posix.listDirectory(path) where name.contains(".tmp-") {
            let p = path + "/" + name
            if let pidPart = name.split(separator: "-").dropLast().last, let pid = Int32(pidPart),
               kill(pid, 0) == 0 && pid != getpid() {
                continue  // its writer still runs
            }
            try? Posix.unlinkIfPresent(p)
        }
        return removed
    }

    /// Points `last` and `last.rev` at a revision (relative symlinks).
    public func updateLastLinks(_ rev: Revision) {
        let target = rev.backend == .native ? rev.id + ".map" : rev.id
        for (name, to) in [("last", target), ("last.rev", rev.id + ".rev")] {
            let tmp = path + "/." + name + ".tmp-\(getpid())"
            Glibc.unlink(tmp)
            if symlink(to, tmp) == 0 {
                if Glibc.rename(tmp, path + "/" + name) != 0 { Glibc.unlink(tmp) }
            }
        }
    }

    /// Rewrites a revision's metadata file.
    public func save(_ rev: Revision, durable: Bool = true) throws {
        try rev.write(path: revPath(rev.id), durable: durable)
    }

    /// Rewrites revisions under the job's metadata lock `.meta` (held only
    /// for the read-modify-write), so concurrent distrust, verify, expiry and
    /// forget never lose each other's changes.
    public func updateRevisions(_ ids: Set<String>, _ change: (inout Revision) throws -> Void) throws {
        guard !ids.isEmpty else { return }
        let lock = self.lock(".meta")
        try lock.lock(.exclusive)
        defer { lock.unlock() }
        for id in ids.sorted() {
            let p = revPath(id)
            guard Posix.exists(p) else { continue }
            var rev = try Revision.load(path: p)
            let before = rev
            try change(&rev)
            if rev != before { try save(rev) }
        }
    }

    /// Runs `body` holding the metadata lock `.meta`.
    public func withMetadataLock<T>(_ body: () throws -> T) throws -> T {
        let lock = self.lock(".meta")
        try lock.lock(.exclusive)
        defer { lock.unlock() }
        return try body()
    }

    // MARK: locks

    public func lock(_ name: String) -> FileLock { FileLock(path: path + "/" + name) }
}
