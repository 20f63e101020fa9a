// DirectoryChunks: the chunk files of a job directory,
// `chunks/<2 hex>/<64 hex>.chunk` (docs/store-format.md, "Chunks"), and the
// backy 2.4 chunks beside them (`<32 hex>.chunk.lzo`, store v2, or v1's
// `<hh>/<hh>/`). A chunk is written to `chunks/.tmp/<hex>.<session>.tmp`,
// fsynced and renamed into place, so it appears whole or not at all; the
// subdirectories that received chunks are fsynced before a map names them.
// Chunk files are never opened through a symlink, and `checkOwnership` tells
// whether the store's directories are the job's own.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class DirectoryChunks: ChunkObjects, Sendable {
    /// The chunk directory's name in a job directory.
    public static let directoryName = "chunks"
    public static let suffix = ".chunk"
    public static let legacySuffix = ".chunk.lzo"
    public static let tempSuffix = ".tmp"
    /// Directory for chunk files being written; renamed into place when whole.
    public static let tempDirName = ".tmp"

    public let root: String
    public var location: String { root }
    var tempDirectory: String { root + "/" + DirectoryChunks.tempDirName }

    public init(root: String) {
        self.root = root
    }

    /// Creates the store directory, its 256 subdirectories and the `store`
    /// marker (content "v2", as backy 2.4 expects of a one-level store).
    public func prepare() throws {
        try Posix.mkdirIfMissing(root)
        try Posix.mkdirIfMissing(tempDirectory)
        for i in 0..<256 {
            try Posix.mkdirIfMissing(root + "/" + String(format: "%02x", i))
        }
        let marker = root + "/store"
        if !Posix.exists(marker) {
            try Posix.writeFileAtomically(marker, Array("v2".utf8), mode: 0o644)
        }
    }

    func path(_ id: ChunkID) -> String {
        root + "/" + id.prefix + "/" + id.hex + DirectoryChunks.suffix
    }

    /// `chunks/<hh>/<hash>.chunk.lzo` (store v2), or v1's
    /// `chunks/<hh>/<hh>/<hash>.chunk.lzo` when only that exists.
    func legacyPath(_ hash: String) -> String {
        let v2 = root + "/" + hash.prefix(2) + "/" + hash + DirectoryChunks.legacySuffix
        if Posix.exists(v2) { return v2 }
        let v1 = root + "/" + hash.prefix(2) + "/" + hash.dropFirst(2).prefix(2) + "/" + hash + DirectoryChunks.legacySuffix
        return Posix.exists(v1) ? v1 : v2
    }

    public func location(of chunk: StoredChunk) -> String {
        switch chunk {
        case .native(let id): return path(id)
        case .legacy(let h): return legacyPath(h)
        }
    }

    public func exists(_ id: ChunkID) -> Bool {
        if id.isZero { return true }
        return access(path(id), F_OK) == 0
    }

    /// The chunk file's size (lstat: a symlink is not followed).
    public func size(of chunk: StoredChunk) -> Int64? {
        Posix.linkStatus(location(of: chunk)).map { Int64($0.st_size) }
    }

    /// Opens a chunk file for reading. A symlink is never followed (a store
    /// holds only regular files: a link could lead into another job's store
    /// or anywhere else); it reads as a corrupt chunk.
    public func open(_ chunk: StoredChunk) throws -> StoredObject {
        let p = location(of: chunk)
        let name = chunk.name
        let f: DirectoryFile?
        do {
            f = try DirectoryFile.open(p, noFollow: true)
        } catch let e as BackyError {
            if e.errno == ELOOP { throw ChunkReadError(name: name, fault: .corrupt("\(p) is a symlink")) }
            throw ChunkReadError(name: name, fault: .io(e.message))
        }
        guard let f else { throw ChunkReadError(name: name, fault: .missing) }
        guard f.isPlain else { throw ChunkReadError(name: name, fault: .corrupt("\(p) is not a regular file")) }
        return f
    }

    /// A chunk file written to its temp name, not yet fsynced and renamed.
    final class PendingFile: PendingPut, Sendable {
        let id: ChunkID
        let fd: Int32
        let tmp: String
        let final: String
        let size: Int
        let chunks: DirectoryChunks

        init(id: ChunkID, fd: Int32, tmp: String, final: String, size: Int, chunks: DirectoryChunks) {
            self.id = id
            self.fd = fd
            self.tmp = tmp
            self.final = final
            self.size = size
            self.chunks = chunks
        }

        /// fsync, close, rename into place.
        func commit() throws {
            do {
                try Posix.fsync(fd, path: tmp)
            } catch {
                abandon()
                throw error
            }
            close(fd)
            if Glibc.rename(tmp, final) != 0 {
                do {
                    guard errno == ENOENT else { throw BackyError.posix("cannot rename \(tmp) to \(final)") }
                    // The subdirectory is missing (a store made by hand): create it.
                    try Posix.mkdirIfMissing(chunks.root + "/" + id.prefix)
                    try Posix.rename(tmp, final)
                } catch {
                    Glibc.unlink(tmp)
                    throw error
                }
            }
            CrashPoints.reached(.chunkRenamed)
        }

        func abandon() {
            close(fd)
            Glibc.unlink(tmp)
        }
    }

    /// Writes the chunk to its temp file (mode 0440); `commit` fsyncs and
    /// renames it. The session id in the temp name lets purge tell a live
    /// writer's temp files from a crashed one's.
    public func beginPut(_ id: ChunkID, _ chunk: EncodedChunk, session: String) throws -> PendingPut {
        precondition(!id.isZero, "zero chunks have no file")
        let final = path(id)
        let tmp = tempDirectory + "/" + id.hex + "." + session + DirectoryChunks.tempSuffix
        var fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o440)
        if fd < 0 && errno == ENOENT {
            // The temp directory is missing (a store from elsewhere): create it.
            try Posix.mkdirIfMissing(root)
            try Posix.mkdirIfMissing(tempDirectory)
            fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o440)
        }
        if fd < 0 { throw BackyError.posix("cannot create \(tmp)") }
        do {
            let h = chunk.header, p = chunk.payload
            if h.baseAddress! + h.count == p.baseAddress {
                try Posix.pwriteFull(fd, h.baseAddress!, chunk.size, 0, path: tmp)
            } else {
                try Posix.pwriteFull(fd, h.baseAddress!, h.count, 0, path: tmp)
                try Posix.pwriteFull(fd, p.baseAddress!, p.count, Int64(h.count), path: tmp)
            }
        } catch {
            close(fd)
            Glibc.unlink(tmp)
            throw error
        }
        return PendingFile(id: id, fd: fd, tmp: tmp, final: final, size: chunk.size, chunks: self)
    }

    /// fsyncs the subdirectories in which these chunks were renamed.
    public func makeDurable(_ ids: [ChunkID]) throws {
        var prefixes = Set<UInt8>()
        for id in ids { prefixes.insert(UInt8(id.w0 >> 56)) }
        for b in prefixes.sorted() {
            try Posix.fsyncDirectory(root + "/" + String(format: "%02x", b))
        }
    }

    /// A store that purge and verify may not act on.
    static func notOwn(_ what: String) -> BackyError {
        BackyError(.corrupt, "\(what): refusing to act on a chunk store that is not provably this job's own (chunks/ and its subdirectories must be real directories, not symlinks)")
    }

    /// Proves the store is the job's own before purge or verify act on it:
    /// `chunks/` and every entry directly in it that is a directory are
    /// real directories, not symlinks (a symlink could lead into another
    /// job's store, whose chunks purge would then remove, or anywhere
    /// else). A missing store is an empty one.
    public func checkOwnership() throws {
        guard let st = Posix.linkStatus(root) else {
            if errno == ENOENT { return }
            throw BackyError.posix("cannot stat \(root)")
        }
        switch Posix.entryType(st.st_mode) {
        case .directory: break
        case .symlink: throw DirectoryChunks.notOwn("\(root) is a symlink")
        default: throw DirectoryChunks.notOwn("\(root) is not a directory")
        }
        for e in try Posix.listDirectoryTyped(root) where e.type == .symlink {
            throw DirectoryChunks.notOwn("\(root)/\(e.name) is a symlink")
        }
    }

    /// Lists every native chunk file and every backy 2.4 chunk file of a v2
    /// store in the chunk subdirectories (unsorted; temp files and other
    /// files are not listed). With `strict` (purge), a symlink anywhere in
    /// the store is an error; otherwise symlinks are skipped.
    public func list(strict: Bool, _ body: (StoredChunk) throws -> Void) throws {
        guard Posix.isDirectory(root) else { return }
        if strict { try checkOwnership() }
        for sub in try Posix.listDirectoryTyped(root).sorted(by: { $0.name < $1.name }) {
            guard sub.name.utf8.count == 2, sub.name != DirectoryChunks.tempDirName else { continue }
            if sub.type == .symlink {
                if strict { throw DirectoryChunks.notOwn("\(root)/\(sub.name) is a symlink") }
                continue
            }
            guard sub.type == .directory else { continue }
            let dir = root + "/" + sub.name
            for e in try Posix.listDirectoryTyped(dir) {
                if e.type == .symlink {
                    if strict { throw DirectoryChunks.notOwn("\(dir)/\(e.name) is a symlink") }
                    continue
                }
                let name = e.name
                if e.type == .file, name.hasSuffix(DirectoryChunks.suffix), name.utf8.count == 64 + DirectoryChunks.suffix.utf8.count,
                   let id = ChunkID(hex: name.prefix(64)), id.prefix == sub.name, id.hex == name.prefix(64) {
                    try body(.native(id))
                } else if name.hasSuffix(DirectoryChunks.legacySuffix), name.utf8.count == 32 + DirectoryChunks.legacySuffix.utf8.count,
                          name.hasPrefix(sub.name) {
                    try body(.legacy(String(name.prefix(32))))
                }
            }
        }
    }

    public func makeRemover() throws -> ChunkRemover {
        try StoreDirectories(chunks: self)
    }

    /// Removes temp files of sessions that are not live (only in a store of
    /// real directories: a symlinked store may be another job's, whose live
    /// sessions this job cannot see; purge refuses such a store anyway).
    public func removeUnfinished(isLive: (String) -> Bool) throws -> Int {
        let own = ((try? PinSession.requireRealDirectory(root)) ?? false)
            && ((try? PinSession.requireRealDirectory(tempDirectory)) ?? false)
        guard own else { return 0 }
        var removed = 0
        for name in try Posix.listDirectory(tempDirectory) {
            guard let sid = DirectoryChunks.tempFileSession(name), !isLive(String(sid)) else { continue }
            Glibc.unlink(tempDirectory + "/" + name)
            removed += 1
        }
        return removed
    }

    /// The session of a chunk temp file `<64 hex>.<session>.tmp`; nil for
    /// any other name.
    static func tempFileSession(_ name: String) -> Substring? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2] == "tmp", parts[0].utf8.count == 64, ChunkID(hex: parts[0]) != nil,
              PinSession.isSessionID(parts[1]) else { return nil }
        return parts[1]
    }
}
