// RestoreOutput: where a restore writes — stdout, a block device, or a
// regular file made sparse — checked against the target policy before
// anything is written; direct I/O where the target allows it.
import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The restore target: stdout, a block device, or a regular file that is
/// made sparse. Files and block devices get a second descriptor opened with
/// O_DIRECT for the aligned part of each write; targets that refuse direct
/// I/O (at open or at the first write) are written through the page cache.
// @unchecked Sendable: writes from several threads use only `let` descriptors (pwrite) and `Locked`; `finished` is changed by finish()/abandon() on the restore's own thread after its writers are joined.
final class OutputFile: @unchecked Sendable {
    let fd: Int32
    /// The O_DIRECT descriptor, or -1.
    let directFd: Int32
    let name: String
    let isStream: Bool
    let isRegular: Bool
    let isBlock: Bool
    let created: Bool
    /// The file this restore created (where a symlink led), removed again
    /// if the restore fails.
    let createdPath: String
    let size: UInt64
    private var finished = false
    /// Cleared when the target turns out not to take direct writes.
    private let direct = Locked(true)
    /// Alignment of buffer, offset and length for direct writes (covers
    /// devices with 512-byte and 4 KiB logical blocks).
    static let directAlign = 4096
    // nonisolated(unsafe): filled with zeros once, in the lazy initializer (which Swift runs once); only ever read after.
    nonisolated(unsafe) private static let zeros: UnsafeMutableRawBufferPointer = {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: ChunkMap.defaultChunkSize, alignment: 4096)
        b.initializeMemory(as: UInt8.self, repeating: 0)
        return b
    }()

    init(target: Restorer.Target, size: UInt64, policy: RestoreTargetPolicy = .none, buffered: Bool = false) throws {
        self.size = size
        switch target {
        case .stdout:
            if isatty(1) != 0 {
                throw BackyError(.usage, "refusing to write image data to a terminal; redirect stdout or give a file name")
            }
            fd = dup(1)
            if fd < 0 { throw BackyError.posix("cannot use stdout") }
            directFd = -1
            name = "stdout"
            // A redirect to a regular file is written sequentially too.
            isStream = true
            isRegular = false
            isBlock = false
            created = false
            createdPath = ""
        case .path(let p):
            name = p
            if let st = Posix.status(p), (st.st_mode & S_IFMT) == S_IFDIR {
                throw BackyError(.usage, "restore target \(p) is a directory")
            }
            // Where it leads is checked before anything is created; then,
            // on the opened descriptor, what it really is.
            try policy.checkBeforeOpening(p)
            // Create it if it is new (then it is ours), else open what is
            // there without changing it; check it before writing anything.
            var f = Glibc.open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            var made = f >= 0
            if f < 0 && errno == EEXIST {
                f = Glibc.open(p, O_WRONLY | O_CLOEXEC | O_NONBLOCK)
                if f < 0 && errno == ENOENT {
                    // A dangling symlink: create what it points to.
                    f = Glibc.open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                    if f < 0 && errno == EEXIST { f = Glibc.open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) }
                    made = f >= 0
                }
            }
            if f < 0 { throw BackyError.posix("cannot open restore target \(p)") }
            // What this restore created (through a symlink: the file it
            // points to, not the link) goes again if the restore fails.
            let madePath = made ? (RestoreTargetPolicy.pathOf(fd: f) ?? Posix.resolve(p) ?? p) : p
            do {
                try policy.check(fd: f, name: p, created: made)
            } catch {
                close(f)
                if made { unlink(madePath) }
                throw error
            }
            _ = fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK)
            fd = f
            created = made
            createdPath = madePath
            isStream = false
            var st2 = stat()
            fstat(f, &st2)
            isRegular = (st2.st_mode & S_IFMT) == S_IFREG
            isBlock = (st2.st_mode & S_IFMT) == S_IFBLK
            if isRegular {
                // Drop old contents so zero chunks can stay holes.
                if ftruncate(f, 0) != 0 || ftruncate(f, off_t(size)) != 0 {
                    let e = BackyError.posix("cannot size restore target \(p)")
                    close(f)
                    if created { unlink(createdPath) }
                    throw e
                }
            }
            if buffered {
                directFd = -1
            } else {
                directFd = Glibc.open(p, O_WRONLY | O_CLOEXEC | Posix.oDirect)
            }
        }
    }

    /// Granularity of holes inside a chunk written to a regular file.
    static let holeBlock = 64 * 1024

    /// Writes one chunk's bytes at `off` (called from several threads).
    func write(_ b: UnsafeRawBufferPointer, at off: UInt64) throws {
        if isRegular {
            // Leave all-zero blocks inside a chunk as holes too.
            var pos = 0
            while pos < b.count {
                var end = pos
                while end < b.count {
                    let n = min(OutputFile.holeBlock, b.count - end)
                    if ChunkHash.isAllZero(UnsafeRawBufferPointer(rebasing: b[end..<(end + n)])) { break }
                    end += n
                }
                if end > pos {
                    try place(b.baseAddress! + pos, end - pos, Int64(off) + Int64(pos))
                }
                // Skip the zero run.
                pos = end
                while pos < b.count {
                    let n = min(OutputFile.holeBlock, b.count - pos)
                    if !ChunkHash.isAllZero(UnsafeRawBufferPointer(rebasing: b[pos..<(pos + n)])) { break }
                    pos += n
                }
            }
            return
        }
        if isStream {
            try Posix.writeFull(fd, b.baseAddress!, b.count, path: name)
        } else {
            try place(b.baseAddress!, b.count, Int64(off))
        }
    }

    /// A positioned write: the aligned head directly, the rest (a short
    /// tail at the end of the image) through the page cache.
    private func place(_ p: UnsafeRawPointer, _ n: Int, _ off: Int64) throws {
        let a = OutputFile.directAlign
        var done = 0
        if directFd >= 0, Int(bitPattern: p) % a == 0, off % Int64(a) == 0, direct.get {
            let aligned = n - n % a
            while done < aligned {
                let r = Glibc.pwrite(directFd, p + done, aligned - done, off_t(off + Int64(done)))
                if r < 0 {
                    if errno == EINTR { continue }
                    if errno == EINVAL {
                        // This target does not take direct writes after all.
                        direct.with { $0 = false }
                        break
                    }
                    throw BackyError.posix("cannot write \(name) at offset \(off + Int64(done))")
                }
                done += r
                if r % a != 0 { break }  // an odd short write: finish buffered
            }
        }
        if done < n {
            try Posix.pwriteFull(fd, p + done, n - done, off + Int64(done), path: name)
        }
    }

    /// Starts writing back what was just written through the page cache
    /// (without waiting), so the final fsync has little left and the page
    /// cache does not fill up.
    func startWriteback(at off: UInt64, length n: Int) {
        if isStream { return }
        if directFd >= 0 && direct.get && n % OutputFile.directAlign == 0 { return }
        _ = posix_fadvise(fd, off_t(off), off_t(n), POSIX_FADV_DONTNEED)
    }

    func writeZeros(_ n: Int, at off: UInt64) throws {
        if isRegular { return }  // already a hole
        try write(UnsafeRawBufferPointer(rebasing: OutputFile.zeros[0..<n]), at: off)
    }

    func finish() throws {
        if !isStream {
            // A regular file or block device must be on disk before the
            // restore reports success (a failing disk shows here). Other
            // targets (/dev/null, a tty) may not support fsync.
            if Glibc.fsync(fd) != 0 && (isRegular || isBlock || errno != EINVAL) {
                throw BackyError.posix("cannot fsync \(name)")
            }
        }
        if directFd >= 0 { close(directFd) }
        close(fd)
        finished = true
    }

    /// After a failure: close, and remove the file if this restore created it.
    func abandon() {
        if finished { return }
        if directFd >= 0 { close(directFd) }
        close(fd)
        finished = true
        if created, !isStream { unlink(createdPath) }
    }
}
