// PinSession: how a running backup, restore, verify or NBD session tells
// purge which chunks it relies on, without holding a lock for its whole run
// (docs/store-format.md, "Purge and concurrent sessions").
//
// Each session owns `.pins/<session>.pin`, flocked exclusively while the
// process lives. Writers append the 32-byte id of every chunk they store or
// reuse, before they test the store for it; readers hard-link the maps of
// the revisions they read as `.pins/<session>.<revision>.map`. Both steps
// happen inside a short shared hold of the gate `.pins/gate`; purge decides
// and deletes inside exclusive holds of the same gate. A session whose pin
// file is not locked is dead, and purge removes its pins and temp files.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class PinSession: @unchecked Sendable {
    public static let directoryName = ".pins"
    public static let gateName = "gate"

    public let id: String
    public let jobPath: String
    public let directory: String
    public let pinPath: String
    private var fd: Int32
    private let mutex = NSLock()
    private var linkedMaps: [String] = []
    private var closed = false

    /// Opens a new session for the job at `jobPath`.
    public init(jobPath: String) throws {
        self.jobPath = jobPath
        directory = jobPath + "/" + PinSession.directoryName
        try Posix.mkdirIfMissing(directory)
        var rng = SystemRandomNumberGenerator()
        id = String(format: "%016llx", rng.next() as UInt64)
        pinPath = directory + "/" + id + ".pin"
        // Create unnamed, lock, then give it its name: purge never sees an
        // unlocked pin file of a live session, and a session killed before
        // the link leaves nothing behind.
        let anon = Glibc.open(directory, Posix.oTmpfile | O_WRONLY | O_CLOEXEC, 0o644)
        if anon >= 0 {
            if flock(anon, LOCK_EX | LOCK_NB) == 0,
               linkat(AT_FDCWD, "/proc/self/fd/\(anon)", AT_FDCWD, pinPath, AT_SYMLINK_FOLLOW) == 0 {
                fd = anon
                // O_APPEND for the pin writes.
                _ = fcntl(anon, F_SETFL, fcntl(anon, F_GETFL) | O_APPEND)
                return
            }
            Glibc.close(anon)
        }
        // Without O_TMPFILE: under a temp name, lock, then rename (a session
        // killed in between leaves a `.new` file that purge removes once it
        // is a minute old).
        let tmp = directory + "/" + id + ".new"
        fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
        if fd < 0 { throw BackyError.posix("cannot create pin file \(tmp)") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            Glibc.close(fd)
            throw BackyError.posix("cannot lock pin file \(tmp)")
        }
        do { try Posix.rename(tmp, pinPath) } catch { Glibc.close(fd); Glibc.unlink(tmp); throw error }
    }

    deinit { close() }

    /// Appends chunk ids to the pin file. Call inside `Gate.shared`.
    public func pin(_ ids: UnsafeRawBufferPointer) throws {
        guard ids.count > 0 else { return }
        mutex.lock(); defer { mutex.unlock() }
        guard !closed else { throw BackyError(.other, "pin session \(id) is closed") }
        try Posix.writeFull(fd, ids.baseAddress!, ids.count, path: pinPath)
    }

    public func pin(_ id: ChunkID) throws {
        if id.isZero { return }
        var buf = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        try withUnsafeMutableBytes(of: &buf) { b in
            id.store(to: b.baseAddress!)
            try pin(UnsafeRawBufferPointer(b))
        }
    }

    public func pin(_ ids: [ChunkID]) throws {
        var bytes = [UInt8](repeating: 0, count: 32 * ids.count)
        var n = 0
        bytes.withUnsafeMutableBytes { b in
            for id in ids where !id.isZero {
                id.store(to: b.baseAddress! + 32 * n)
                n += 1
            }
        }
        try bytes.withUnsafeBytes { try pin(UnsafeRawBufferPointer(rebasing: $0[0..<(32 * n)])) }
    }

    /// Hard-links a revision's map into the pin directory, so its chunks stay
    /// even if the revision is removed meanwhile. Call inside `Gate.shared`.
    /// Throws `.notFound` if the map is gone.
    public func pinMap(revision: String, mapPath: String) throws {
        let link = directory + "/" + id + "." + revision + ".map"
        mutex.lock(); defer { mutex.unlock() }
        if Posix.exists(link) { return }
        if Glibc.link(mapPath, link) != 0 {
            if errno == ENOENT { throw BackyError(.notFound, "revision \(revision) has no map (removed?)") }
            if errno == EPERM || errno == EXDEV || errno == EMLINK {
                // No hard links here: copy the map instead.
                let bytes = try Posix.readFile(mapPath, limit: Posix.Limit.map)
                try Posix.writeFileAtomically(link, bytes, mode: 0o440, durable: false)
            } else {
                throw BackyError.posix("cannot link \(mapPath) to \(link)")
            }
        }
        linkedMaps.append(link)
    }

    /// Ends the session: removes its pins and releases the lock. The pins
    /// go inside a shared hold of the gate, as they came: a purge batch,
    /// which reads the job's maps and then the sessions' pins under the
    /// exclusive gate, sees either these pins or what replaced them (the map
    /// a finished backup wrote before it closed its session), never neither.
    public func close() {
        mutex.lock(); defer { mutex.unlock() }
        if closed { return }
        closed = true
        let release = {
            for l in self.linkedMaps { Glibc.unlink(l) }
            Glibc.unlink(self.pinPath)
        }
        // Without a gate (it cannot be opened) no purge can run either.
        if (try? Gate(jobPath: jobPath).shared(release)) == nil { release() }
        Glibc.close(fd)
    }
}

extension PinSession {
    /// What `cleanDead` removed.
    public struct Cleanup: Sendable {
        public var sessions = 0
        public var tempFiles = 0
    }

    /// Whether `s` is a session id (16 lowercase hex digits).
    static func isSessionID<S: StringProtocol>(_ s: S) -> Bool {
        s.utf8.count == 16 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// The session of a chunk temp file `<64 hex>.<session>.tmp`; nil for
    /// any other name.
    static func tempFileSession(_ name: String) -> Substring? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2] == "tmp", parts[0].utf8.count == 64, ChunkID(hex: parts[0]) != nil,
              isSessionID(parts[1]) else { return nil }
        return parts[1]
    }

    /// Throws unless `path` is a real directory (or absent): cleaning up
    /// through a symlink would remove files somewhere else.
    static func requireRealDirectory(_ path: String) throws -> Bool {
        guard let st = Posix.linkStatus(path) else {
            if errno == ENOENT { return false }
            throw BackyError.posix("cannot stat \(path)")
        }
        guard Posix.entryType(st.st_mode) == .directory else {
            throw ChunkStore.notOwn("\(path) is \(Posix.entryType(st.st_mode) == .symlink ? "a symlink" : "not a directory")")
        }
        return true
    }

    /// Removes the pins and chunk temp files of sessions whose process is
    /// gone (their pin file is no longer locked). Safe while other sessions
    /// run: a live session's pin file is always locked. Only names of the
    /// pin and temp file schemes are touched, and never through a symlink.
    @discardableResult
    public static func cleanDead(jobPath: String, store: ChunkStore) throws -> Cleanup {
        var result = Cleanup()
        let dir = jobPath + "/" + directoryName
        var live = Set<Substring>()
        var dead = Set<Substring>()
        if try requireRealDirectory(dir) {
            let names = try Posix.listDirectory(dir)
            let now = Date().timeIntervalSince1970
            for name in names where name.hasSuffix(".pin") || name.hasSuffix(".new") {
                let sid = name.dropLast(4)
                guard isSessionID(sid) else { continue }
                let p = dir + "/" + name
                // A `.new` file is locked right after it is created; only an
                // old one can belong to a session that died in between.
                if name.hasSuffix(".new") {
                    guard let st = Posix.linkStatus(p), now - Double(st.st_mtim.tv_sec) > 60 else {
                        live.insert(sid)
                        continue
                    }
                }
                let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
                if fd < 0 {
                    if errno == ENOENT { continue }
                    throw BackyError.posix("cannot open pin file \(p)")
                }
                if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                    // Nobody holds it: the session is dead.
                    Glibc.unlink(p)
                    dead.insert(sid)
                    result.sessions += 1
                } else {
                    live.insert(sid)
                }
                Glibc.close(fd)
            }
            for name in names where name.hasSuffix(".map") {
                let parts = name.split(separator: ".", omittingEmptySubsequences: false)
                guard parts.count == 3, isSessionID(parts[0]), RevisionID.isWellFormed(String(parts[1])) else { continue }
                if !live.contains(parts[0]) { Glibc.unlink(dir + "/" + name) }
            }
        }
        // Temp files only in a store of real directories (a symlinked store
        // may be another job's, whose live sessions this job cannot see;
        // purge refuses such a store anyway).
        let ownStore = ((try? requireRealDirectory(store.root)) ?? false)
            && ((try? requireRealDirectory(store.tempDirectory)) ?? false)
        if ownStore {
            for name in try Posix.listDirectory(store.tempDirectory) {
                guard let sid = tempFileSession(name) else { continue }
                if !live.contains(sid) {
                    // Check again: the session may have started after the scan.
                    if Posix.exists(dir + "/" + sid + ".pin") && !dead.contains(sid) { continue }
                    Glibc.unlink(store.tempDirectory + "/" + name)
                    result.tempFiles += 1
                }
            }
        }
        return result
    }
}

/// The gate: a file lock taken shared for a moment by sessions while they
/// pin, and exclusively by purge and quarantine while they decide and delete.
/// One `Gate` per thread (flock locks belong to the open file description).
public final class Gate {
    public let path: String
    private var fd: Int32 = -1

    public init(jobPath: String) {
        path = jobPath + "/" + PinSession.directoryName + "/" + PinSession.gateName
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    private func ensureOpen() throws {
        if fd >= 0 { return }
        try Posix.mkdirIfMissing((path as NSString).deletingLastPathComponent)
        fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw BackyError.posix("cannot open gate \(path)") }
    }

    private func take(_ op: Int32) throws {
        try ensureOpen()
        while flock(fd, op) != 0 {
            if errno == EINTR { continue }
            throw BackyError.posix("cannot lock \(path)")
        }
    }

    /// Runs `body` holding the gate shared.
    public func shared<T>(_ body: () throws -> T) throws -> T {
        try take(LOCK_SH)
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    /// Runs `body` holding the gate exclusively.
    public func exclusive<T>(_ body: () throws -> T) throws -> T {
        try take(LOCK_EX)
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}
