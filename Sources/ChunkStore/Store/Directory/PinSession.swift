// PinSession: a session of the directory backend — how a running backup,
// restore, verify or NBD session tells purge which chunks it relies on,
// without holding a lock for its whole run (docs/store-format.md, "Purge
// and concurrent sessions").
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

// @unchecked Sendable: `fd` is set in init and closed once (under `mutex`, after `closed`); `linkedMaps` and `closed` are read and changed only under `mutex`.
public final class PinSession: StoreSession, @unchecked Sendable {
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

    /// Pins chunk `id`, then tells whether `chunks` holds it, both inside
    /// one shared hold of `gate`.
    public func pinThenTest(_ id: ChunkID, in chunks: ChunkObjects, gate: StoreGate) throws -> Bool {
        try gate.shared { () throws -> Bool in
            try pin(id)
            return chunks.exists(id)
        }
    }

    /// Hard-links a revision's map into the pin directory as
    /// `<session>.<revision>.map` (inside a shared hold of the gate), so its
    /// chunks stay even if the revision is removed meanwhile; returns the
    /// link's name. Throws `.notFound` if the map is gone.
    public func pinMap(_ map: StoreObjectName, revision: String) throws -> StoreObjectName {
        let name = id + "." + revision + ".map"
        let link = directory + "/" + name
        let mapPath = DirectoryBackend.path(of: map, jobPath: jobPath)
        try Gate(jobPath: jobPath).shared {
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
        return .pinnedMap(name)
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
