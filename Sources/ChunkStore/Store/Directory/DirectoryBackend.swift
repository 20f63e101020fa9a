// DirectoryBackend: the storage seam over a job directory in backy 2.4's
// shape (docs/store-format.md, "Job directory"): `<id>.rev`, `<id>.map`,
// backy 2.4's `<id>`, `chunks/` (DirectoryChunks), `verified`,
// `quarantine/`, the lock files, `.pins/` (PinSession, Gate), and the
// `last`/`last.rev` symlinks as a courtesy to operators. Only well-formed
// revision ids ever become paths; metadata is written through temp files,
// fsync and rename.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class DirectoryBackend: StoreBackend, Sendable {
    /// The job directory (a real path).
    public let jobPath: String
    public let chunks: ChunkObjects
    private let directoryChunks: DirectoryChunks

    public init(jobPath: String) {
        self.jobPath = jobPath
        directoryChunks = DirectoryChunks(root: jobPath + "/" + DirectoryChunks.directoryName)
        chunks = directoryChunks
    }

    public var location: String { jobPath }
    public var isWritable: Bool { access(jobPath, W_OK) == 0 }

    public func prepare() throws { try chunks.prepare() }

    static let quarantineDirectory = "quarantine"

    /// The file of an object in the job directory at `jobPath`.
    public static func path(of object: StoreObjectName, jobPath: String) -> String {
        switch object {
        case .revision(let id): return jobPath + "/" + id + ".rev"
        case .map(let id): return jobPath + "/" + id + ".map"
        case .legacyData(let id): return jobPath + "/" + id
        case .pins(let session): return jobPath + "/" + PinSession.directoryName + "/" + session + ".pin"
        case .pinnedMap(let name): return jobPath + "/" + PinSession.directoryName + "/" + name
        case .verifiedIndex: return jobPath + "/" + VerifiedIndex.fileName
        case .quarantineReport(let name): return jobPath + "/" + quarantineDirectory + "/" + name
        case .damageReport(let name): return jobPath + "/" + name
        case .sourceConfig: return jobPath + "/config"
        case .drillRecord: return jobPath + "/drill.json"
        }
    }

    public func location(of object: StoreObjectName) -> String { DirectoryBackend.path(of: object, jobPath: jobPath) }

    /// Whether `dir` looks like a job directory (a `config` file and a
    /// `chunks` directory): a restore never writes into one.
    public static func isJobDirectory(_ dir: String) -> Bool {
        guard let c = Posix.status(dir + "/config"), (c.st_mode & S_IFMT) == S_IFREG else { return false }
        return Posix.isDirectory(dir + "/" + DirectoryChunks.directoryName)
    }

    /// The job directory `real` (a real path) lies in, where restore, `get`
    /// and `copy` never write: `own` (a job's real path) if `real` is it or
    /// inside it, else the nearest backy job directory above `real`.
    public static func jobDirectory(containing real: String, own: String?) -> (path: String, isOwn: Bool)? {
        if let own, !own.isEmpty, real == own || real.hasPrefix(own + "/") { return (own, true) }
        return enclosingJob(of: real).map { ($0, false) }
    }

    /// The nearest directory above `path` (a real path) that is a backy
    /// job directory, if any.
    public static func enclosingJob(of path: String) -> String? {
        var dir = (path as NSString).deletingLastPathComponent
        while !dir.isEmpty {
            if isJobDirectory(dir) { return dir }
            if dir == "/" { break }
            dir = (dir as NSString).deletingLastPathComponent
        }
        return nil
    }

    /// A file in the job directory at `jobPath` (its top level, `.pins`,
    /// the chunk subdirectories) that is the same inode as `st`: a restore
    /// must not write through a hard link into the store.
    public static func file(sameAs st: stat, jobPath job: String) -> String? {
        guard let js = Posix.status(job), js.st_dev == st.st_dev else { return nil }
        var dirs = [job, job + "/" + PinSession.directoryName]
        let chunks = job + "/" + DirectoryChunks.directoryName
        if let subs = try? Posix.listDirectoryTyped(chunks) {
            dirs += subs.filter { $0.type == .directory }.map { chunks + "/" + $0.name }
        }
        for d in dirs {
            guard let names = try? Posix.listDirectoryTyped(d) else { continue }
            for e in names where e.type == .file {
                if let s = Posix.linkStatus(d + "/" + e.name), s.st_ino == st.st_ino, s.st_dev == st.st_dev {
                    return d + "/" + e.name
                }
            }
        }
        return nil
    }

    public func open(_ object: StoreObjectName) throws -> StoredObject? {
        switch object {
        case .pins:
            // A pin file is never read through a symlink.
            return try DirectoryFile.open(location(of: object), noFollow: true)
        case .map, .pinnedMap:
            return try DirectoryFile.open(location(of: object), what: "map")
        default:
            return try DirectoryFile.open(location(of: object))
        }
    }

    public func read(_ object: StoreObjectName, limit: Int) throws -> [UInt8] {
        try Posix.readFile(location(of: object), limit: limit)
    }

    /// Files backy writes are read-only (0440), except the ones it rewrites
    /// in place of others or that operators edit (0644).
    static func mode(of object: StoreObjectName) -> mode_t {
        switch object {
        case .revision, .map, .legacyData, .pins, .pinnedMap, .sourceConfig: return 0o440
        case .verifiedIndex, .quarantineReport, .damageReport, .drillRecord: return 0o644
        }
    }

    public func write(_ object: StoreObjectName, _ bytes: [UInt8], durable: Bool, crashPoint: CrashPoint?) throws {
        let p = location(of: object)
        if case .quarantineReport = object { try Posix.mkdirIfMissing(Posix.parentDirectory(p)) }
        try Posix.writeFileAtomically(p, bytes, mode: DirectoryBackend.mode(of: object), durable: durable,
                                      crashPoint: crashPoint)
    }

    public func remove(_ object: StoreObjectName, durable: Bool) throws {
        let p = location(of: object)
        try Posix.unlinkIfPresent(p)
        if durable { try Posix.fsyncDirectory(Posix.parentDirectory(p)) }
    }

    /// stat(2), following symlinks: nil if the file is really gone (ENOENT,
    /// and no dangling symlink left under its name).
    public func version(of object: StoreObjectName) throws -> (version: ObjectVersion, isPlain: Bool)? {
        let p = location(of: object)
        var st = stat()
        if stat(p, &st) == 0 {
            return (ObjectVersion(Int64(st.st_ino), Int64(st.st_size), Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec)),
                    (st.st_mode & S_IFMT) == S_IFREG)
        }
        let e = errno
        if e == ENOENT, Posix.linkStatus(p) == nil, errno == ENOENT { return nil }
        if e == ENOENT { throw BackyError(.corrupt, "\(p) is a dangling symlink") }
        throw BackyError(.io, "cannot stat \(p): \(String(cString: strerror(e)))", errno: e)
    }

    /// lstat(2): a symlink is not followed.
    public func size(of object: StoreObjectName) -> Int64? {
        Posix.linkStatus(location(of: object)).map { Int64($0.st_size) }
    }

    /// Allocated bytes of the job directory, like `du` (symlinks are not
    /// followed; three levels: chunks/<xx>/<file>).
    public func spaceUsed() -> Int64 { DirectoryBackend.diskUse(jobPath, depth: 3) }

    static func diskUse(_ path: String, depth: Int) -> Int64 {
        guard let st = Posix.linkStatus(path) else { return 0 }
        var total = Int64(st.st_blocks) * 512
        guard Posix.entryType(st.st_mode) == .directory, depth > 0,
              let entries = try? Posix.listDirectoryTyped(path) else { return total }
        for e in entries {
            let p = path + "/" + e.name
            if e.type == .directory {
                total += diskUse(p, depth: depth - 1)
            } else if let s = Posix.linkStatus(p) {
                total += Int64(s.st_blocks) * 512
            }
        }
        return total
    }

    // MARK: listings

    /// `<id>.rev` files: symlinks (`last.rev`) are skipped; other files that
    /// are not regular, or whose stem is not a revision id, are ignored with
    /// the reason.
    public func listRevisions() throws -> RevisionListing {
        var out = RevisionListing()
        for name in try Posix.listDirectory(jobPath) where !name.hasPrefix(".") {
            if name.hasSuffix(".map") {
                let stem = String(name.dropLast(4))
                if RevisionID.isWellFormed(stem) { out.maps.append(stem) }
                continue
            }
            guard name.hasSuffix(".rev") else { continue }
            let p = jobPath + "/" + name
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
            out.ids.append(stem)
        }
        return out
    }

    public func listQuarantineReports() throws -> [String] {
        guard let names = try? Posix.listDirectory(jobPath + "/" + DirectoryBackend.quarantineDirectory) else { return [] }
        return names.filter { $0.hasSuffix(".json") }
    }

    /// Maps named `<id>.map` (other names protect nothing), `<id>.rev`
    /// regular files and the `<id>` beside each (backy 2.4's JSON map or
    /// raw image, of a complete revision or not); then, in `.pins/` (only
    /// if it is a real directory), the pinned maps and pin files.
    public func listReferenceObjects() throws -> [StoreObjectName] {
        var out: [StoreObjectName] = []
        for e in try Posix.listDirectoryTyped(jobPath) where !e.name.hasPrefix(".") {
            let name = e.name
            if name.hasSuffix(".map") {
                let stem = String(name.dropLast(4))
                if RevisionID.isWellFormed(stem) { out.append(.map(stem)) }
            } else if name.hasSuffix(".rev"), e.type == .file, RevisionID.isWellFormed(String(name.dropLast(4))) {
                let id = String(name.dropLast(4))
                out.append(.revision(id))
                out.append(.legacyData(id))
            }
        }
        let pinDir = jobPath + "/" + PinSession.directoryName
        if try PinSession.requireRealDirectory(pinDir) {
            for name in try Posix.listDirectory(pinDir) {
                if name.hasSuffix(".map") { out.append(.pinnedMap(name)) }
                if name.hasSuffix(".pin") { out.append(.pins(String(name.dropLast(4)))) }
            }
        }
        return out
    }

    // MARK: revisions

    /// Every file named `<id>` or `<id>.…` except `<id>.rev`: the map, backy
    /// 2.4's data, temp files of interrupted writes.
    public func removeRevisionData(_ id: String) throws {
        precondition(RevisionID.isWellFormed(id))
        for name in try Posix.listDirectory(jobPath) where name.hasPrefix(id) && name != id + ".rev" {
            let rest = name.dropFirst(id.count)
            guard rest.isEmpty || rest.hasPrefix(".") else { continue }
            try Posix.unlinkIfPresent(jobPath + "/" + name)
        }
    }

    /// fsyncs the job directory and drops `last` and `last.rev` if they
    /// pointed at the revision.
    public func finishRemoval(of id: String) throws {
        try Posix.fsyncDirectory(jobPath)
        for l in ["last", "last.rev"] {
            let p = jobPath + "/" + l
            var st = stat()
            if lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK, !Posix.exists(p) {
                Glibc.unlink(p)
            }
        }
    }

    /// Points `last` and `last.rev` at a revision (relative symlinks).
    public func revisionCompleted(_ rev: Revision) {
        let target = rev.backend == .native ? rev.id + ".map" : rev.id
        for (name, to) in [("last", target), ("last.rev", rev.id + ".rev")] {
            let tmp = jobPath + "/." + name + ".tmp-\(getpid())"
            Glibc.unlink(tmp)
            if symlink(to, tmp) == 0 {
                if Glibc.rename(tmp, jobPath + "/" + name) != 0 { Glibc.unlink(tmp) }
            }
        }
    }

    /// Temp files of interrupted metadata writes whose writer is gone.
    public func removeStaleTemporaries() throws {
        for name in try Posix.listDirectory(jobPath) {
            guard let pid = Job.tempFileWriter(name) else { continue }
            if pid == getpid() || kill(pid, 0) == 0 || errno == EPERM { continue }  // its writer still runs
            try? Posix.unlinkIfPresent(jobPath + "/" + name)
        }
    }

    // MARK: quarantine

    /// Moves a chunk file to `quarantine/<name>.<stamp>.<chunk|chunk.lzo>`.
    public func quarantine(_ chunk: StoredChunk, stamp: String) throws -> String? {
        let src = chunks.location(of: chunk)
        guard Posix.exists(src) else { return nil }
        let dir = jobPath + "/" + DirectoryBackend.quarantineDirectory
        try Posix.mkdirIfMissing(dir)
        let suffix = (src as NSString).lastPathComponent.split(separator: ".").dropFirst().joined(separator: ".")
        let dst = dir + "/" + chunk.name + "." + stamp + "." + suffix
        try Posix.rename(src, dst)
        try Posix.fsyncDirectory(dir)
        return dst
    }

    // MARK: locks, sessions, the gate

    public func lock(_ name: JobLockName) -> JobLock { FileLock(path: jobPath + "/" + name.rawValue) }

    public func openSession() throws -> StoreSession { try PinSession(jobPath: jobPath) }

    public func makeGate() -> StoreGate { Gate(jobPath: jobPath) }

    public func cleanDeadSessions() throws -> SessionCleanup {
        try PinSession.cleanDead(jobPath: jobPath, store: ChunkStore(chunks: directoryChunks))
    }
}
