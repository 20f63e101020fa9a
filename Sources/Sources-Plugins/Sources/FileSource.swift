// FileSource: source type `file` ({type: file, filename: PATH}): an image
// file or a block device. Reads with pread into per-worker buffers, skips
// holes found with SEEK_DATA/SEEK_HOLE, and verifies by re-reading every
// chunk of the source and reading back every chunk this run stored.
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
        try ctx.writer.process(indices: indices, map: &map) { i, ws, body in
            // Read slice by slice and hash each slice while it is in cache.
            let len = m.length(of: i)
            var digest = ChunkDigester()
            // A short read (end of file) is reported by the writer.
            let got = try FileSource.readSliced(fd, into: ws.data, length: len, at: Int64(i) * Int64(cs), path: name) {
                digest.update($0)
            }
            try body(UnsafeRawBufferPointer(rebasing: ws.data[0..<got]), digest.finish())
        }
        ctx.extraStats["bytes_written"] = .int(Int64(src.size))
        return map
    }

    public func verify(_ ctx: BackupContext, map: ChunkMap) throws {
        ctx.log.info("Performing full verification")
        let src = try openSource()
        defer { close(src.fd) }
        if src.size != map.imageSize {
            throw BackyError(.verification, "source size changed during backup: \(map.imageSize) → \(src.size) bytes")
        }
        let data = FileSource.dataChunks(fd: src.fd, size: src.size, chunkSize: map.chunkSize, regular: src.regular)
        let written = ctx.writer.written
        let fastHashes = ctx.writer.fastHashes
        let store = ctx.job.store
        let fd = src.fd
        let name = filename
        let mismatches = Locked<[String]>([])
        let readBack = Locked(0)
        // Blocks whose chunk this run stored go last: their files may still
        // be flushing while the others are checked.
        let storedLast = map.chunks.indices.filter { !map.chunks[$0].isZero && written[map.chunks[$0]] != $0 }
            + map.chunks.indices.filter { !map.chunks[$0].isZero && written[map.chunks[$0]] == $0 }
            + map.chunks.indices.filter { map.chunks[$0].isZero }
        let writer = ctx.writer
        let progress = writer.progress
        progress?.start("verify", total: Int64(map.imageSize))
        defer { progress?.finish() }
        try Parallel.forEach(count: storedLast.count, threads: ctx.writer.threads,
                             setup: { _ in ChunkWorkspace() }) { ws, k in
            let i = storedLast[k]
            defer { progress?.add(Int64(map.length(of: i))) }
            let second = ws.spare
            let expected = map.chunks[i]
            let len = map.length(of: i)
            if !data[i] {
                if !expected.isZero {
                    mismatches.with { $0.append("offset \(map.offset(of: i)): source is a hole now, backup has \(expected.hex)") }
                }
                return
            }
            // Blocks this run did not store are checked by XXH64, hashed
            // slice by slice as they are re-read.
            let storedNow = !expected.isZero && written[expected] == i
            let fast = i < fastHashes.count ? fastHashes[i] : 0
            let streamFast = !expected.isZero && !storedNow && fast != 0
            var stream = FastHash.Stream()
            let got = try FileSource.readSliced(fd, into: ws.data, length: len, at: Int64(map.offset(of: i)), path: name) {
                if streamFast { stream.update($0) }
            }
            do {
                let buf = UnsafeRawBufferPointer(rebasing: ws.data[0..<got])
                if buf.count != len {
                    mismatches.with { $0.append("offset \(map.offset(of: i)): short read (\(buf.count) of \(len) bytes)") }
                    return
                }
                if storedNow {
                    try writer.finishCommits()
                    // A chunk this run stored: read it back (decompress) and
                    // compare with the re-read source bytes. Equal bytes prove
                    // both that the source still holds what was hashed into the
                    // map and that the chunk file holds it too, so the second
                    // SHA-256 would add nothing.
                    do {
                        let n = try store.read(expected, into: second, workspace: ws, checkHash: false)
                        if n != len || memcmp(second.baseAddress!, buf.baseAddress!, len) != 0 {
                            let actual = ChunkHash.id(of: buf)
                            if actual != expected {
                                mismatches.with { $0.append("offset \(map.offset(of: i)): source hashes to \(actual.hex), backup has \(expected.hex)") }
                            } else {
                                mismatches.with { $0.append("offset \(map.offset(of: i)): stored chunk \(expected.hex) does not read back as written") }
                            }
                        }
                    } catch {
                        mismatches.with { $0.append("offset \(map.offset(of: i)): stored chunk does not read back: \(error)") }
                    }
                    readBack.with { $0 += 1 }
                    return
                }
                // Every other block: the backup pass hashed it into the map with
                // SHA-256 and recorded its XXH64; the re-read must give the same
                // bytes. (SHA-256 again where no XXH64 was recorded.)
                if expected.isZero {
                    if !ChunkHash.isAllZero(buf) {
                        let actual = ChunkHash.sha256(buf)
                        mismatches.with { $0.append("offset \(map.offset(of: i)): source hashes to \(actual.hex), backup has the zero chunk") }
                    }
                } else if streamFast && stream.finish() == fast {
                    return
                } else {
                    let actual = ChunkHash.id(of: buf)
                    if actual != expected {
                        mismatches.with { $0.append("offset \(map.offset(of: i)): source hashes to \(actual.hex), backup has \(expected.hex)") }
                    }
                }
            }
        }
        let bad = mismatches.get
        if !bad.isEmpty {
            for line in bad.prefix(20) { ctx.log.error("Verification mismatch at \(line)") }
            throw BackyError(.verification, "verification failed: \(bad.count) of \(map.chunks.count) chunks differ (first: \(bad[0]))")
        }
        ctx.extraStats["verified_chunks"] = .int(Int64(map.chunks.count))
        ctx.extraStats["verified_read_back"] = .int(Int64(readBack.get))
    }
}
