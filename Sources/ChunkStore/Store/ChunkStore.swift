// ChunkStore: the content-addressed directory of chunk files of one job,
// `chunks/<2 hex>/<64 hex>.chunk`. Writes appear whole or not at all
// (temp file, fsync, rename); every read re-checks the SHA-256; chunk files
// are never opened through a symlink, and `checkOwnership` tells whether the
// store's directories are the job's own.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class ChunkStore: @unchecked Sendable {
    /// zstd level used for new chunks (override with BACKY_ZSTD_LEVEL).
    public static let defaultLevel: Int32 = {
        if let s = ProcessInfo.processInfo.environment["BACKY_ZSTD_LEVEL"], let v = Int32(s) { return v }
        return 1
    }()

    public static let suffix = ".chunk"
    public static let tempSuffix = ".tmp"
    /// Directory for chunk files being written; renamed into place when whole.
    public static let tempDirName = ".tmp"

    public let root: String

    public init(root: String) {
        self.root = root
    }

    /// Creates the store directory, its 256 subdirectories and the `store`
    /// marker (content "v2", as backy 2.4 expects of a one-level store).
    public func create() throws {
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

    public func directory(prefix: String) -> String { root + "/" + prefix }
    public var tempDirectory: String { root + "/" + ChunkStore.tempDirName }

    public func path(_ id: ChunkID) -> String {
        root + "/" + id.prefix + "/" + id.hex + ChunkStore.suffix
    }

    public func exists(_ id: ChunkID) -> Bool {
        if id.isZero { return true }
        return access(path(id), F_OK) == 0
    }

    /// A chunk file written to its temp name, not yet fsynced and renamed.
    public struct PendingChunk: Sendable {
        public let id: ChunkID
        public let fd: Int32
        public let tmp: String
        public let final: String
        /// Size of the chunk file.
        public let size: Int
    }

    /// Encodes and writes one chunk. `data` holds the uncompressed bytes whose
    /// SHA-256 is `id`. The file is fsynced before it is renamed into place;
    /// the caller fsyncs the subdirectory (see `syncDirectories`).
    /// `tag` names the writer's session in the temp file name, so purge can
    /// tell a live writer's temp files from a crashed one's.
    /// Returns the size of the chunk file.
    @discardableResult
    public func write(_ id: ChunkID, data: UnsafeRawBufferPointer, workspace ws: ChunkWorkspace, tag: String) throws -> Int {
        let p = try writeUnsynced(id, data: data, workspace: ws, tag: tag)
        try commit(p)
        return p.size
    }

    /// First half of `write`: encodes the chunk into its temp file. The
    /// returned file must be passed to `commit` or `abandon`.
    public func writeUnsynced(_ id: ChunkID, data: UnsafeRawBufferPointer, workspace ws: ChunkWorkspace, tag: String) throws -> PendingChunk {
        precondition(!id.isZero, "zero chunks have no file")
        let n = data.count
        // Compress; keep the result only where it saves at least 1/32.
        var codec = ChunkCodec.raw
        var payloadLength = n
        let out = UnsafeMutableRawBufferPointer(rebasing: ws.file[ChunkHeader.size...])
        if let c = ws.compressor.compress(data, into: out), c < n - n / 32 {
            codec = .zstd
            payloadLength = c
        }
        ChunkHeader(codec: codec, uncompressedLength: UInt32(n), payloadLength: UInt32(payloadLength))
            .encode(to: ws.file.baseAddress!)

        let final = path(id)
        let tmp = tempDirectory + "/" + id.hex + "." + tag + ChunkStore.tempSuffix
        var fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o440)
        if fd < 0 && errno == ENOENT {
            // The temp directory is missing (a store from elsewhere): create it.
            try Posix.mkdirIfMissing(root)
            try Posix.mkdirIfMissing(tempDirectory)
            fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o440)
        }
        if fd < 0 { throw BackyError.posix("cannot create \(tmp)") }
        do {
            if codec == .zstd {
                try Posix.pwriteFull(fd, ws.file.baseAddress!, ChunkHeader.size + payloadLength, 0, path: tmp)
            } else {
                try Posix.pwriteFull(fd, ws.file.baseAddress!, ChunkHeader.size, 0, path: tmp)
                try Posix.pwriteFull(fd, data.baseAddress!, n, Int64(ChunkHeader.size), path: tmp)
            }
        } catch {
            close(fd)
            Glibc.unlink(tmp)
            throw error
        }
        return PendingChunk(id: id, fd: fd, tmp: tmp, final: final, size: ChunkHeader.size + payloadLength)
    }

    /// Second half of `write`: fsync, close, rename into place.
    public func commit(_ p: PendingChunk) throws {
        do {
            try Posix.fsync(p.fd, path: p.tmp)
        } catch {
            abandon(p)
            throw error
        }
        close(p.fd)
        if Glibc.rename(p.tmp, p.final) != 0 {
            do {
                guard errno == ENOENT else { throw BackyError.posix("cannot rename \(p.tmp) to \(p.final)") }
                // The subdirectory is missing (a store made by hand): create it.
                try Posix.mkdirIfMissing(directory(prefix: p.id.prefix))
                try Posix.rename(p.tmp, p.final)
            } catch {
                Glibc.unlink(p.tmp)
                throw error
            }
        }
        CrashPoints.reached(.chunkRenamed)
    }

    /// Drops a pending chunk file.
    public func abandon(_ p: PendingChunk) {
        close(p.fd)
        Glibc.unlink(p.tmp)
    }

    /// Reads chunk `id` into `ws.data`, decompresses it and checks its hash.
    /// Returns the uncompressed length. Throws `ChunkReadError`.
    public func read(_ id: ChunkID, workspace ws: ChunkWorkspace) throws -> Int {
        try read(id, into: ws.data, workspace: ws, checkHash: true)
    }

    /// Reads chunk `id` into `out` (using `ws.file` as scratch and its
    /// decompressor). With `checkHash` the SHA-256 of the bytes must be `id`.
    public func read(_ id: ChunkID, into out: UnsafeMutableRawBufferPointer, workspace ws: ChunkWorkspace,
                     checkHash: Bool) throws -> Int {
        if id.isZero { throw ChunkReadError(id: id, fault: .corrupt("the zero chunk has no file")) }
        let p = path(id)
        let fd: Int32
        do { fd = try ChunkStore.openChunkFile(p, name: id.hex) } catch let e as ChunkReadError {
            throw ChunkReadError(id: id, fault: e.fault)
        }
        defer { close(fd) }
        let n: Int
        do {
            var st = stat()
            if fstat(fd, &st) != 0 { throw ChunkReadError(id: id, fault: .io("cannot stat \(p)")) }
            let fileSize = Int(st.st_size)
            let got = try Posix.preadFull(fd, ws.file.baseAddress!, ChunkHeader.size, 0, path: p)
            let header: ChunkHeader
            switch ChunkHeader.decode(UnsafeRawBufferPointer(rebasing: ws.file[0..<got])) {
            case .success(let h): header = h
            case .failure(let f): throw ChunkReadError(id: id, fault: f)
            }
            let pl = Int(header.payloadLength)
            let ul = Int(header.uncompressedLength)
            if fileSize < ChunkHeader.size + pl {
                throw ChunkReadError(id: id, fault: .truncated("\(fileSize - ChunkHeader.size) of \(pl) payload bytes"))
            }
            if fileSize > ChunkHeader.size + pl {
                throw ChunkReadError(id: id, fault: .corrupt("\(fileSize - ChunkHeader.size - pl) trailing bytes"))
            }
            if ul > out.count || pl > ws.file.count - ChunkHeader.size {
                throw ChunkReadError(id: id, fault: .corrupt("length \(ul) exceeds the chunk size"))
            }
            switch header.codec {
            case .raw:
                let r = try Posix.preadFull(fd, out.baseAddress!, pl, Int64(ChunkHeader.size), path: p)
                if r != pl { throw ChunkReadError(id: id, fault: .truncated("\(r) of \(pl) payload bytes")) }
                n = pl
            case .zstd:
                let r = try Posix.preadFull(fd, ws.file.baseAddress! + ChunkHeader.size, pl, Int64(ChunkHeader.size), path: p)
                if r != pl { throw ChunkReadError(id: id, fault: .truncated("\(r) of \(pl) payload bytes")) }
                let payload = UnsafeRawBufferPointer(rebasing: ws.file[ChunkHeader.size..<(ChunkHeader.size + pl)])
                do {
                    n = try ws.decompressor.decompress(payload, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<ul]))
                } catch {
                    throw ChunkReadError(id: id, fault: .corrupt("\(error)"))
                }
                if n != ul { throw ChunkReadError(id: id, fault: .corrupt("decompressed \(n) bytes, header says \(ul)")) }
            }
        } catch let e as ChunkReadError {
            throw e
        } catch {
            throw ChunkReadError(id: id, fault: .io("\(error)"))
        }
        if checkHash {
            let actual = ChunkHash.id(of: UnsafeRawBufferPointer(rebasing: out[0..<n]))
            if actual != id { throw ChunkReadError(id: id, fault: .hashMismatch(actual: actual.hex)) }
        }
        return n
    }

    /// Opens a chunk file for reading. A symlink is never followed (a store
    /// holds only regular files: a link could lead into another job's store
    /// or anywhere else); it reads as a corrupt chunk.
    static func openChunkFile(_ p: String, name: String) throws -> Int32 {
        let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd >= 0 {
            var st = stat()
            if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { return fd }
            close(fd)
            throw ChunkReadError(name: name, fault: .corrupt("\(p) is not a regular file"))
        }
        let e = errno
        if e == ENOENT { throw ChunkReadError(name: name, fault: .missing) }
        if e == ELOOP { throw ChunkReadError(name: name, fault: .corrupt("\(p) is a symlink")) }
        throw ChunkReadError(name: name, fault: .io("cannot open \(p): \(String(cString: strerror(e)))"))
    }

    /// fsyncs the subdirectories (by first byte) in which chunks were renamed.
    public func syncDirectories(_ prefixes: Set<UInt8>) throws {
        for b in prefixes.sorted() {
            try Posix.fsyncDirectory(root + "/" + String(format: "%02x", b))
        }
    }

    /// An entry found when listing the store.
    public enum Entry {
        case chunk(ChunkID)
        /// A file in a chunk subdirectory that is not a native chunk
        /// (backy 2.4's `<32 hex>.chunk.lzo`, a v1 subdirectory, junk).
        case other(path: String, prefix: String, name: String)
    }

    /// A store that purge and verify may not act on.
    public static func notOwn(_ what: String) -> BackyError {
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
        case .symlink: throw ChunkStore.notOwn("\(root) is a symlink")
        default: throw ChunkStore.notOwn("\(root) is not a directory")
        }
        for e in try Posix.listDirectoryTyped(root) where e.type == .symlink {
            throw ChunkStore.notOwn("\(root)/\(e.name) is a symlink")
        }
    }

    /// Lists every native chunk file and every other file in the chunk
    /// subdirectories (unsorted; temp files are not listed). With `strict`
    /// (purge), a symlink anywhere in the store is an error; otherwise
    /// symlinks are skipped.
    public func list(strict: Bool = false, _ body: (Entry) throws -> Void) throws {
        guard Posix.isDirectory(root) else { return }
        if strict { try checkOwnership() }
        for sub in try Posix.listDirectoryTyped(root).sorted(by: { $0.name < $1.name }) {
            guard sub.name.utf8.count == 2, sub.name != ChunkStore.tempDirName else { continue }
            if sub.type == .symlink {
                if strict { throw ChunkStore.notOwn("\(root)/\(sub.name) is a symlink") }
                continue
            }
            guard sub.type == .directory else { continue }
            let dir = root + "/" + sub.name
            for e in try Posix.listDirectoryTyped(dir) {
                if e.type == .symlink {
                    if strict { throw ChunkStore.notOwn("\(dir)/\(e.name) is a symlink") }
                    continue
                }
                let name = e.name
                if e.type == .file, name.hasSuffix(ChunkStore.suffix), name.utf8.count == 64 + ChunkStore.suffix.utf8.count,
                   let id = ChunkID(hex: name.prefix(64)), id.prefix == sub.name, id.hex == name.prefix(64) {
                    try body(.chunk(id))
                } else {
                    try body(.other(path: dir + "/" + name, prefix: sub.name, name: name))
                }
            }
        }
    }

    /// Every native chunk id in the store.
    public func allChunks() throws -> [ChunkID] {
        var ids: [ChunkID] = []
        try list { if case .chunk(let id) = $0 { ids.append(id) } }
        return ids
    }
}
