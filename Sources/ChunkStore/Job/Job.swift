// Job: one job directory in backy 2.4's shape: `config`, `<id>.rev` per
// revision, `<id>.map` per native revision, `chunks/`, lock files, `last`
// and `last.rev` symlinks. Scans revisions (only well-formed ids become
// paths; other files are ignored and reported, never removed), resolves
// revision specs (future-dated revisions only by id), checks a revision's
// files for damage, creates job directories (0700), removes revisions and
// incomplete leftovers.
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

    /// Mode of a new job directory: only its owner may enter it (its
    /// chunks are the VM's data), or with `groupAccess` also its group
    /// (0750), whatever the umask.
    public static func directoryMode(groupAccess: Bool) -> mode_t { groupAccess ? 0o750 : 0o700 }

    /// Creates a job directory (missing parents 0755) with
    /// `directoryMode`; an existing directory is left as it is. Returns
    /// whether it was created.
    @discardableResult
    public static func createDirectory(_ path: String, groupAccess: Bool) throws -> Bool {
        if Posix.isDirectory(path) { return false }
        try createDirectory(path, mode: directoryMode(groupAccess: groupAccess))
        return true
    }

    private static func createDirectory(_ path: String, mode: mode_t) throws {
        if Posix.isDirectory(path) { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path && !Posix.isDirectory(parent) { try createDirectory(parent, mode: 0o755) }
        if mkdir(path, mode) != 0 {
            if errno == EEXIST && Posix.isDirectory(path) { return }  // made meanwhile
            if errno == EEXIST { throw BackyError(.io, "cannot create job directory \(path): it exists and is not a directory") }
            throw BackyError.posix("cannot create job directory \(path)")
        }
        // mkdir's mode is masked by the umask: set it exactly.
        if chmod(path, mode) != 0 { throw BackyError.posix("cannot set the mode of \(path)") }
    }

    /// Creates the job directory (if needed) and writes `config`; refuses to
    /// overwrite an existing config.
    @discardableResult
    public static func initialize(path: String, source: YAMLMap, groupAccess: Bool = false,
                                  logger: Logger = Logger(label: "backy")) throws -> Job {
        try refuseExistingConfig(path: path)
        try createDirectory(path, groupAccess: groupAccess)
        let cfg = path + "/config"
        try writeConfig(path: cfg, source: source)
        let job = try Job(path: path, logger: logger)
        try job.store.create()
        return job
    }

    /// Throws if `path` already holds a job `config` (`init` never
    /// overwrites one).
    public static func refuseExistingConfig(path: String) throws {
        let cfg = path + "/config"
        if Posix.linkStatus(cfg) != nil {
            throw BackyError(.usage, "Refusing to initialize with existing config \(cfg).")
        }
    }

    /// Writes a job `config` (flow style, one line, keys sorted, like 2.4).
    public static func writeConfig(path: String, source: YAMLMap) throws {
        try Posix.writeFileAtomically(path, Array((YAML.flow(.map(source)) + "\n").utf8), mode: 0o440)
    }

    /// The source description from `config`: backy 2.4's flat map, or 2.5's
    /// `{source: {...}, schedule: {...}}`.
    public func sourceConfig() throws -> YAMLMap {
        let bytes = try Posix.readFile(configPath, limit: Posix.Limit.metadata)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw BackyError(.usage, "\(configPath): not UTF-8 text")
        }
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

    /// What a scan found: the revisions, and the `.rev` files it ignored
    /// (with the reason), which are never used, changed or removed.
    public struct ScanResult: Sendable {
        public var revisions: [Revision] = []
        public var ignored: [(name: String, reason: String)] = []

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
        for name in try Posix.listDirectory(path) where name.hasSuffix(".rev") && !name.hasPrefix(".") {
            let p = path + "/" + name
            var st = stat()
            guard lstat(p, &st) == 0 else {
                if errno != ENOENT { out.ignored.append((name, "cannot stat: \(String(cString: strerror(errno)))")) }
                continue
            }
            // Symlinks (`last.rev`) are not revisions; other non-files are odd.
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                if (st.st_mode & S_IFMT) != S_IFLNK { out.ignored.append((name, "not a regular file")) }
                continue
            }
            let stem = String(name.dropLast(4))
            guard RevisionID.isWellFormed(stem) else {
                out.ignored.append((name, "not a revision id"))
                continue
            }
            let r: Revision
            do {
                r = try Revision.load(path: p)
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
    public func scan() throws -> [Revision] {
        let r = try scanReport()
        if let line = r.ignoredSummary {
            let first = warnedIgnored.with { w -> Bool in defer { w = line }; return w != line }
            if first { log.warning("\(name): \(line)") }
        }
        return r.revisions
    }

    /// Complete revisions, oldest first.
    public func history() throws -> [Revision] { try scan().filter { $0.isComplete } }

    /// How far in the future a revision's timestamp may lie before it is
    /// *future-dated* (clocks of one host differ by less).
    public static let futureTolerance: TimeInterval = 600

    /// Complete revisions that count as backups for `latest`, numbers,
    /// tags, parents, the SLA and the schedule: not future-dated. A
    /// revision dated after `now` + `futureTolerance` (a clock that was
    /// wrong, a damaged or planted file) is flagged by status and check and
    /// reachable only by its id.
    public static func usable(_ all: [Revision], now: Date = Date()) -> [Revision] {
        all.filter { $0.isComplete && !$0.isFutureDated(now: now) }
    }

    /// Why a complete revision cannot be read, from a cheap check of its
    /// files (the map's header and size, not its checksum); nil if it looks
    /// whole.
    public func damage(of rev: Revision) -> String? {
        guard rev.isComplete else { return nil }
        switch rev.backend {
        case .native:
            do { _ = try ChunkMap.readHeader(path: mapPath(rev.id)) } catch { return "\(error)" }
        case .legacyChunked, .cowfile:
            let p = legacyImagePath(rev.id)
            guard let st = Posix.status(p) else {
                return "\(p): \(rev.backend == .cowfile ? "raw image" : "JSON map") is missing"
            }
            guard (st.st_mode & S_IFMT) == S_IFREG else { return "\(p) is not a regular file" }
            if rev.backend == .legacyChunked {
                var head = [UInt8](repeating: 0, count: 2)
                let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
                defer { if fd >= 0 { Glibc.close(fd) } }
                let n = fd < 0 ? -1 : head.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, 2, 0) }
                if n != 2 || head != [UInt8(ascii: "{"), UInt8(ascii: "\"")] { return "\(p) is not a JSON chunk map" }
            }
        case .unknown(let s):
            return "unknown backend type '\(s)'"
        }
        return nil
    }

    /// Resolves a revision spec (backy 2.4 §2.3): a number counts back from
    /// the newest complete revision (0 = newest); an exact id; `last` or
    /// `latest`; a tag (newest complete revision carrying it).
    /// Numbers, `latest` and tags count only usable (not future-dated)
    /// revisions; an exact id finds any revision.
    public static func find(_ spec: String, in all: [Revision], now: Date = Date()) throws -> Revision {
        let complete = usable(all, now: now)
        let s = spec.trimmingCharacters(in: .whitespaces)
        if s.isEmpty { throw BackyError(.notFound, "empty revision spec") }
        if let n = Int(s) {
            if n < 0 { throw BackyError(.notFound, "unknown revision '\(spec)' (negative number)") }
            if n < complete.count { return complete[complete.count - 1 - n] }
        }
        if let r = all.first(where: { $0.id == s }) { return r }
        if s == "last" || s == "latest" {
            if let r = complete.last { return r }
            throw BackyError(.notFound, "unknown revision '\(spec)': the job has no complete revision" + (all.contains { $0.isComplete } ? " that is not future-dated (give its id)" : ""))
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
            var rev = try Revision.load(path: revPath(id))
            if rev.isComplete {
                rev.stats["duration"] = nil
                try save(rev)
            }
        } catch let e as BackyError where e.isNoSuchFile {
        } catch let e as BackyError where e.kind == .corrupt || e.kind == .usage {
            try Posix.unlinkIfPresent(revPath(id))
        }
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
        // Temp files of interrupted metadata writes whose writer is gone.
        for name in try Posix.listDirectory(path) {
            guard let pid = Job.tempFileWriter(name) else { continue }
            if pid == getpid() || kill(pid, 0) == 0 || errno == EPERM { continue }  // its writer still runs
            try? Posix.unlinkIfPresent(path + "/" + name)
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
    public func save(_ rev: Revision, durable: Bool = true, crashPoint: CrashPoint? = nil) throws {
        try rev.write(path: revPath(rev.id), durable: durable, crashPoint: crashPoint)
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
