// Restorer: writes a revision's image to a file, a block device or stdout.
// Worker threads read, decompress and hash-check chunks ahead of the writer
// (a bounded window of buffers); the writer emits them strictly in order.
// Regular files come out sparse (zero chunks stay holes); the target is
// never read. A bad chunk stops the restore, or with best-effort is
// replaced by zeros and reported.
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

public struct RestoreDamage: Sendable, Equatable {
    public let chunkIndex: Int
    public let offset: UInt64
    public let length: Int
    public let chunk: String
    public let reason: String
}

public final class Restorer {
    public let image: ImageReader
    public let threads: Int
    public let bestEffort: Bool
    public let log: Logger

    public init(image: ImageReader, threads: Int = Parallel.defaultThreads,
                bestEffort: Bool = false, log: Logger = Logger(label: "backy")) {
        self.image = image
        self.threads = threads
        self.bestEffort = bestEffort
        self.log = log
    }

    /// Where the image goes.
    public enum Target {
        case stdout
        case path(String)
    }

    private enum Slot {
        case empty
        case data(Int)
        case zero
        case damaged(Int, String)
    }

    /// Restores the image; returns the damaged chunks (only with best-effort).
    @discardableResult
    public func run(to target: Target) throws -> [RestoreDamage] {
        let out = try OutputFile(target: target, size: image.imageSize)
        do {
            let damage = try stream(into: out)
            try out.finish()
            return damage
        } catch {
            out.abandon()
            throw error
        }
    }

    private func stream(into out: OutputFile) throws -> [RestoreDamage] {
        let count = image.chunkCount
        let nthreads = max(1, threads)
        let window = max(2, nthreads * 2)
        let workspaces = (0..<nthreads).map { _ in ChunkWorkspace() }
        let buffers = (0..<window).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: image.chunkSize, alignment: 4096) }
        defer { buffers.forEach { $0.deallocate() } }
        var slots = [Slot](repeating: .empty, count: window)
        var nextClaim = 0
        var nextWrite = 0
        var failure: Error? = nil
        let cond = NSCondition()
        let m = image
        let bestEffort = self.bestEffort

        let worker: (Int) -> Void = { w in
            let ws = workspaces[w]
            while true {
                cond.lock()
                while failure == nil && nextClaim < count && nextClaim >= nextWrite + window { cond.wait() }
                if failure != nil || nextClaim >= count { cond.unlock(); return }
                let i = nextClaim
                nextClaim += 1
                cond.unlock()

                let len = m.length(of: i)
                var result: Slot
                if m.isZero(i) {
                    result = .zero
                } else {
                    let buf = buffers[i % window]
                    do {
                        _ = try m.read(i, into: buf, workspace: ws)
                        result = .data(len)
                    } catch let e as ChunkReadError {
                        if bestEffort {
                            result = .damaged(len, e.fault.description)
                        } else {
                            cond.lock()
                            if failure == nil {
                                failure = BackyError(.corrupt, "cannot restore image offset \(m.offset(of: i)) (chunk \(i)): \(e)")
                            }
                            cond.broadcast()
                            cond.unlock()
                            return
                        }
                    } catch {
                        cond.lock()
                        if failure == nil { failure = error }
                        cond.broadcast()
                        cond.unlock()
                        return
                    }
                }
                cond.lock()
                slots[i % window] = result
                cond.broadcast()
                cond.unlock()
            }
        }

        // Workers run on their own threads; this thread writes in order.
        let writerFailure = Locked<Error?>(nil)
        var damage: [RestoreDamage] = []
        Threads.run(count: nthreads + 1) { w in
            if w < nthreads {
                worker(w)
                return
            }
            do {
                damage = try writeInOrder()
            } catch {
                writerFailure.with { $0 = error }
                cond.lock()
                if failure == nil { failure = error }
                cond.broadcast()
                cond.unlock()
            }
        }
        if let e = writerFailure.get { throw e }
        cond.lock()
        let f = failure
        cond.unlock()
        if let f { throw f }
        return damage

        func writeInOrder() throws -> [RestoreDamage] {
        var damage: [RestoreDamage] = []
        for i in 0..<count {
            cond.lock()
            while failure == nil, case .empty = slots[i % window] { cond.wait() }
            if let f = failure { cond.unlock(); throw f }
            let s = slots[i % window]
            cond.unlock()

            let off = m.offset(of: i)
            let len = m.length(of: i)
            switch s {
            case .data(let n):
                try out.write(UnsafeRawBufferPointer(rebasing: buffers[i % window][0..<n]), at: off)
                out.startWriteback(at: off, length: n)
            case .zero:
                try out.writeZeros(len, at: off)
            case .damaged(let n, let why):
                log.error("Chunk \(m.chunkName(i)) at image offset \(off) is unreadable (\(why)); writing zeros")
                damage.append(RestoreDamage(chunkIndex: i, offset: off, length: n, chunk: m.chunkName(i), reason: why))
                try out.writeZeros(n, at: off)
            case .empty:
                break
            }
            cond.lock()
            slots[i % window] = .empty
            nextWrite = i + 1
            cond.broadcast()
            cond.unlock()
        }
        return damage
        }
    }
}

/// The restore target: stdout, a block device, or a regular file that is
/// made sparse.
final class OutputFile {
    let fd: Int32
    let name: String
    let isStream: Bool
    let isRegular: Bool
    let created: Bool
    let size: UInt64
    private var finished = false
    private static let zeros: UnsafeMutableRawBufferPointer = {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: ChunkMap.defaultChunkSize, alignment: 4096)
        b.initializeMemory(as: UInt8.self, repeating: 0)
        return b
    }()

    init(target: Restorer.Target, size: UInt64) throws {
        self.size = size
        switch target {
        case .stdout:
            if isatty(1) != 0 {
                throw BackyError(.usage, "refusing to write image data to a terminal; redirect stdout or give a file name")
            }
            fd = dup(1)
            if fd < 0 { throw BackyError.posix("cannot use stdout") }
            name = "stdout"
            var st = stat()
            fstat(fd, &st)
            // A redirect to a regular file is written sequentially too.
            isStream = true
            isRegular = false
            created = false
        case .path(let p):
            name = p
            let st = Posix.status(p)
            let existed = st != nil
            if let st, (st.st_mode & S_IFMT) == S_IFDIR {
                throw BackyError(.usage, "restore target \(p) is a directory")
            }
            let f = Glibc.open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            if f < 0 { throw BackyError.posix("cannot open restore target \(p)") }
            fd = f
            created = !existed
            isStream = false
            var st2 = stat()
            fstat(f, &st2)
            isRegular = (st2.st_mode & S_IFMT) == S_IFREG
            if isRegular {
                // Drop old contents so zero chunks can stay holes.
                if ftruncate(f, 0) != 0 || ftruncate(f, off_t(size)) != 0 {
                    let e = BackyError.posix("cannot size restore target \(p)")
                    close(f)
                    if created { unlink(p) }
                    throw e
                }
            }
        }
    }

    /// Granularity of holes inside a chunk written to a regular file.
    static let holeBlock = 64 * 1024

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
                    try Posix.pwriteFull(fd, b.baseAddress! + pos, end - pos, Int64(off) + Int64(pos), path: name)
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
            try Posix.pwriteFull(fd, b.baseAddress!, b.count, Int64(off), path: name)
        }
    }

    /// Starts writing back what was just written (without waiting), so the
    /// final fsync has little left and the page cache does not fill up.
    func startWriteback(at off: UInt64, length n: Int) {
        if !isStream { _ = posix_fadvise(fd, off_t(off), off_t(n), POSIX_FADV_DONTNEED) }
    }

    func writeZeros(_ n: Int, at off: UInt64) throws {
        if isRegular { return }  // already a hole
        try write(UnsafeRawBufferPointer(rebasing: OutputFile.zeros[0..<n]), at: off)
    }

    func finish() throws {
        if !isStream {
            if Glibc.fsync(fd) != 0 && isRegular { throw BackyError.posix("cannot fsync \(name)") }
        }
        close(fd)
        finished = true
    }

    /// After a failure: close, and remove the file if this restore created it.
    func abandon() {
        if finished { return }
        close(fd)
        finished = true
        if created, !isStream { unlink(name) }
    }
}
