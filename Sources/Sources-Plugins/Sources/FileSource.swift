// FileSource: source type `file` ({type: file, filename: PATH}): an image
// file or a block device. Reads with pread into per-worker buffers (hashing
// each slice as it is read), skips holes found with SEEK_DATA/SEEK_HOLE,
// and verifies (BackupCheck) by re-reading every chunk of the source and
// reading back every chunk this run stored.
import ChunkStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

public final class FileSource: BackupSource {
    public let typeName = "file"
    public let filename: String

    public init(config: YAMLMap, configPath: String) throws {
        guard let f = config["filename"]?.string, !f.isEmpty else {
            throw BackyError(.usage, "\(configPath): source type file needs a 'filename'")
        }
        filename = f
    }

    public init(filename: String) {
        self.filename = filename
    }

    static func notSeekable(_ path: String, _ mode: mode_t) -> BackyError {
        let what: String
        switch mode & S_IFMT {
        case S_IFIFO: what = "a FIFO (named pipe)"
        case S_IFCHR: what = "a character device"
        case S_IFSOCK: what = "a socket"
        case S_IFDIR: what = "a directory"
        default: what = "not a regular file"
        }
        return BackyError(.usage, "Source is not ready: \(path) is \(what); a file source must be a regular file or a block device")
    }

    /// Throws unless `path` exists and is a regular file or a block device
    /// (`backy init`; a FIFO would block the backup's open forever).
    public static func checkKind(_ path: String) throws {
        guard let st = Posix.status(path) else {
            throw BackyError(.notFound, "Source is not ready: \(path) does not exist: \(String(cString: strerror(errno)))")
        }
        let kind = st.st_mode & S_IFMT
        if kind != S_IFREG && kind != S_IFBLK { throw notSeekable(path, st.st_mode) }
    }

    private func openSource() throws -> (fd: Int32, size: UInt64, regular: Bool) {
        // O_NONBLOCK: opening a FIFO must not wait for a writer; the type
        // is checked before anything is read.
        let fd = open(filename, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            throw BackyError(.notFound, "Source is not ready: cannot open \(filename): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        if fstat(fd, &st) != 0 {
            close(fd)
            throw BackyError.posix("cannot stat \(filename)")
        }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFBLK else {
            close(fd)
            throw FileSource.notSeekable(filename, st.st_mode)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        if kind == S_IFREG {
            return (fd, UInt64(st.st_size), true)
        }
        let end = lseek(fd, 0, SEEK_END)
        if end < 0 { close(fd); throw BackyError.posix("cannot size block device \(filename)") }
        return (fd, UInt64(end), false)
    }

    public func ready() throws {
        let s = try openSource()
        // Make sure it can actually be read (permissions, dead devices).
        var b: UInt8 = 0
        if s.size > 0 && pread(s.fd, &b, 1, 0) < 0 {
            let e = errno
            close(s.fd)
            throw BackyError(.io, "Source is not ready: cannot read \(filename): \(String(cString: strerror(e)))")
        }
        close(s.fd)
    }

    /// For each chunk, whether it touches data (true) or lies wholly in a
    /// hole (false). Without SEEK_DATA support every chunk is data.
    static func dataChunks(fd: Int32, size: UInt64, chunkSize: Int, regular: Bool) -> [Bool] {
        let n = ChunkMap.chunkCount(size, chunkSize)
        guard regular, size > 0 else { return [Bool](repeating: true, count: n) }
        var data = [Bool](repeating: false, count: n)
        var pos: off_t = 0
        let end = off_t(size)
        while pos < end {
            let start = lseek(fd, pos, 3 /* SEEK_DATA */)
            if start < 0 {
                if errno == ENXIO { break }  // no data after pos
                return [Bool](repeating: true, count: n)  // not supported
            }
            var stop = lseek(fd, start, 4 /* SEEK_HOLE */)
            if stop < 0 { stop = end }
            let first = Int(UInt64(start) / UInt64(chunkSize))
            let last = Int((UInt64(min(stop, end)) - 1) / UInt64(chunkSize))
            if first <= last { for i in first...min(last, n - 1) { data[i] = true } }
            pos = stop
        }
        return data
    }

    /// Reads `length` bytes at `offset` into `buf` in slices of
    /// `ChunkDigester.sliceSize`, handing each slice to `each` right after its
    /// read (while it is in cache). Returns the bytes read (fewer at the end
    /// of the file).
    static func readSliced(_ fd: Int32, into buf: UnsafeMutableRawBufferPointer, length: Int, at offset: Int64,
                           path: String, each: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        var got = 0
        while got < length {
            let want = min(ChunkDigester.sliceSize, length - got)
            let n = try Posix.preadFull(fd, buf.baseAddress! + got, want, offset + Int64(got), path: path)
            each(UnsafeRawBufferPointer(rebasing: buf[got..<(got + n)]))
            got += n
            if n < want { break }
        }
        return got
    }

    public func backup(_ ctx: BackupContext) throws -> ChunkMap {
        let src = try openSource()
        defer { close(src.fd) }
        var map = ChunkMap(zeroImageOfSize: src.size)
        let data = FileSource.dataChunks(fd: src.fd, size: src.size, chunkSize: map.chunkSize, regular: src.regular)
        let indices = data.indices.filter { data[$0] }
        ctx.log.info("Performing full read of \(filename): \(src.size) bytes, \(map.chunks.count) chunks, \(map.chunks.count - indices.count) in holes")
        ctx.log.debug("Source decision: \(src.regular ? "a regular file: holes found with SEEK_DATA are not read" : "a block device: every chunk is read"); \(indices.count) chunks to read")
        let fd = src.fd
        let name = filename
        let cs = map.chunkSize
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        let m = map
        try ctx.writer.store(indices, of: &map) { i, ws in
            // Read slice by slice and hash each slice while it is in cache.
            var digest = ChunkDigester()
            // A short read (end of file) is reported by the writer.
            let got = try FileSource.readSliced(fd, into: ws.data, length: m.length(of: i), at: Int64(i) * Int64(cs), path: name) {
                digest.update($0)
            }
            return ChunkWriter.Block(length: got, digest: digest.finish())
        }
        ctx.extraStats["bytes_written"] = .int(Int64(src.size))
        return map
    }

    /// Re-reads every block of the source (BackupCheck): a block whose chunk
    /// this run stored is compared with the chunk read back, every other
    /// one by the XXH64 hashed slice by slice as it is re-read.
    public func verify(_ ctx: BackupContext, map: ChunkMap) throws {
        ctx.log.info("Performing full verification")
        let src = try openSource()
        defer { close(src.fd) }
        if src.size != map.imageSize {
            throw BackyError(.verification, "source size changed during backup: \(map.imageSize) → \(src.size) bytes")
        }
        let data = FileSource.dataChunks(fd: src.fd, size: src.size, chunkSize: map.chunkSize, regular: src.regular)
        let fd = src.fd
        let name = filename
        let progress = ctx.writer.progress
        progress?.start("verify", total: Int64(map.imageSize))
        defer { progress?.finish() }
        let check = BackupCheck(writer: ctx.writer, map: map)
        let results = try check.run(check.planAll()) { _, i, ws, wantFast in
            defer { progress?.add(Int64(map.length(of: i))) }
            if !data[i] { return .hole }
            var stream = FastHash.Stream()
            let got = try FileSource.readSliced(fd, into: ws.data, length: map.length(of: i), at: Int64(map.offset(of: i)), path: name) {
                if wantFast { stream.update($0) }
            }
            return .bytes(length: got, fast: wantFast ? stream.finish() : nil)
        }
        var bad: [String] = []
        for r in results {
            guard case .mismatch(let m) = r.outcome else { continue }
            let at = "offset \(map.offset(of: r.item.index))"
            switch m {
            case .hole(let e): bad.append("\(at): source is a hole now, backup has \(e.hex)")
            case .shortRead(let got, let len): bad.append("\(at): short read (\(got) of \(len) bytes)")
            case .notZero(let a): bad.append("\(at): source hashes to \(a.hex), backup has the zero chunk")
            case .differs(let a, let e): bad.append("\(at): source hashes to \(a.hex), backup has \(e.hex)")
            case .storedDiffers(let e): bad.append("\(at): stored chunk \(e.hex) does not read back as written")
            case .readBackFailed(_, let error): bad.append("\(at): stored chunk does not read back: \(error)")
            }
        }
        if !bad.isEmpty {
            for line in bad.prefix(20) { ctx.log.error("Verification mismatch at \(line)") }
            throw BackyError(.verification, "verification failed: \(bad.count) of \(map.chunks.count) chunks differ (first: \(bad[0]))")
        }
        ctx.extraStats["verified_chunks"] = .int(Int64(map.chunks.count))
        ctx.extraStats["verified_read_back"] = .int(Int64(results.filter { $0.readBack }.count))
    }
}
