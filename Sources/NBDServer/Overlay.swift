// Overlay: the throwaway copy-on-write layer of a writable connection. Data
// written by the client goes to a sparse temp file that is unlinked as soon
// as it is created (so it disappears with the connection, or with the
// process after a crash); a map of 4 KiB blocks says which parts of the
// image the overlay holds. The revision and the chunk store are never
// written. Writes that cover a block only partly first copy the block from
// the revision (read-modify-write). `close()` (at the end of the connection)
// closes the file at once, after the operations in progress, and returns
// its space to the shared `OverlaySpace`.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: the block map and `charged` are read and changed only under `lock`; `active`, `closed` and `fdClosed` only under `ioLock`; the rest is `let`.
public final class Overlay: @unchecked Sendable {
    public static let blockSize = 4096

    /// Blocks of one chunk held by the overlay.
    enum ChunkBlocks {
        case all
        case some([UInt64])
    }

    public let size: UInt64
    public let chunkSize: Int
    let blocksPerChunk: Int
    private let fd: Int32
    private let lock = NSLock()
    private var chunks: [Int: ChunkBlocks] = [:]
    /// Operations using `fd`, and whether `close()` was called.
    private let ioLock = NSLock()
    private var active = 0
    private var closed = false
    private var fdClosed = false
    let space: OverlaySpace?
    /// Bytes of `space` this overlay holds (its file's allocation).
    private var charged: UInt64 = 0

    /// Reads `length` bytes of the revision at `offset` into the pointer.
    public typealias BaseReader = (_ offset: UInt64, _ into: UnsafeMutableRawBufferPointer) throws -> Void

    /// Creates the overlay file in `directory` and unlinks it at once.
    public init(size: UInt64, chunkSize: Int, directory: String, space: OverlaySpace? = nil) throws {
        precondition(chunkSize % Overlay.blockSize == 0)
        self.space = space
        self.size = size
        self.chunkSize = chunkSize
        blocksPerChunk = chunkSize / Overlay.blockSize
        var template = Array((directory + "/backy-nbd-overlay-XXXXXX").utf8CString)
        let f = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if f < 0 { throw OverlayError("cannot create an overlay file in \(directory): \(String(cString: strerror(errno)))") }
        _ = fcntl(f, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        if ftruncate(f, off_t(size)) != 0 {
            let e = errno
            Glibc.close(f)
            throw OverlayError("cannot size the overlay file: \(String(cString: strerror(e)))")
        }
        fd = f
    }

    deinit { close() }

    /// Closes the overlay file (once the operations in progress are done)
    /// and gives its space back. Later operations fail.
    public func close() {
        ioLock.lock()
        closed = true
        let now = active == 0 && !fdClosed
        if now { fdClosed = true }
        ioLock.unlock()
        if now { finishClose() }
    }

    private func finishClose() {
        _ = Glibc.close(fd)
        lock.lock()
        let c = charged
        charged = 0
        lock.unlock()
        space?.settle(release: c, take: 0)
    }

    /// Runs `body` with the file open; throws if the overlay is closed.
    private func using<T>(_ body: () throws -> T) throws -> T {
        ioLock.lock()
        if closed {
            ioLock.unlock()
            throw OverlayError("the overlay is closed (the connection ended)")
        }
        active += 1
        ioLock.unlock()
        defer {
            ioLock.lock()
            active -= 1
            let now = closed && active == 0 && !fdClosed
            if now { fdClosed = true }
            ioLock.unlock()
            if now { finishClose() }
        }
        return try body()
    }

    /// Bytes the overlay file occupies on disk.
    private func allocated() -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return 0 }
        return UInt64(st.st_blocks) * 512
    }

    /// Reserves room for a change of `length` bytes at `offset` (whole
    /// blocks), runs it, then charges what the file really occupies. Lock held.
    private func charging(_ offset: UInt64, _ length: UInt64, _ body: () throws -> Void) throws {
        guard let space else { return try body() }
        let bs = UInt64(Overlay.blockSize)
        let worst = ((offset + length + bs - 1) / bs - offset / bs) * bs
        guard space.reserve(worst) else {
            throw OverlayFull(description: "the overlays are full (at most \(space.limit >> 20) MiB for all clients together)")
        }
        defer {
            let now = allocated()
            space.settle(release: charged + worst, take: now)
            charged = now
        }
        try body()
    }

    // MARK: block map (call with the lock held)

    private func has(_ block: Int) -> Bool {
        let c = block / blocksPerChunk
        switch chunks[c] {
        case nil: return false
        case .all?: return true
        case .some(let bits)?:
            let b = block % blocksPerChunk
            return bits[b >> 6] & (1 << UInt64(b & 63)) != 0
        }
    }

    private func mark(_ first: Int, _ last: Int) {
        var b = first
        while b <= last {
            let c = b / blocksPerChunk
            let lo = b % blocksPerChunk
            let hi = min(last - c * blocksPerChunk, blocksPerChunk - 1)
            if lo == 0 && hi == blocksPerChunk - 1 {
                chunks[c] = .all
            } else if case .all? = chunks[c] {
                // already complete
            } else {
                var bits: [UInt64]
                if case .some(let x)? = chunks[c] { bits = x } else { bits = [UInt64](repeating: 0, count: (blocksPerChunk + 63) / 64) }
                for k in lo...hi { bits[k >> 6] |= 1 << UInt64(k & 63) }
                if bits.allSatisfy({ $0 == ~0 }) && blocksPerChunk % 64 == 0 { chunks[c] = .all } else { chunks[c] = .some(bits) }
            }
            b = (c + 1) * blocksPerChunk
        }
    }

    /// Whether the overlay holds any block of chunk `c`.
    public func touches(chunk c: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return chunks[c] != nil
    }

    /// Splits [offset, offset + length) into runs held by the overlay
    /// (`inOverlay`) and runs to read from the revision.
    public func runs(offset: UInt64, length: UInt64) -> [(offset: UInt64, length: UInt64, inOverlay: Bool)] {
        var out: [(offset: UInt64, length: UInt64, inOverlay: Bool)] = []
        let end = offset + length
        lock.lock(); defer { lock.unlock() }
        var pos = offset
        let bs = UInt64(Overlay.blockSize)
        let cs = UInt64(chunkSize)
        while pos < end {
            let c = Int(pos / cs)
            let runEnd: UInt64
            let inOv: Bool
            switch chunks[c] {
            case nil:
                inOv = false
                runEnd = min(end, UInt64(c + 1) * cs)
            case .all?:
                inOv = true
                runEnd = min(end, UInt64(c + 1) * cs)
            case .some?:
                var b = Int(pos / bs)
                inOv = has(b)
                let chunkEndBlock = (c + 1) * blocksPerChunk
                b += 1
                while b < chunkEndBlock && UInt64(b) * bs < end && has(b) == inOv { b += 1 }
                runEnd = min(end, UInt64(b) * bs)
            }
            if let last = out.last, last.inOverlay == inOv, last.offset + last.length == pos {
                out[out.count - 1].length += runEnd - pos
            } else {
                out.append((pos, runEnd - pos, inOv))
            }
            pos = runEnd
        }
        return out
    }

    // MARK: I/O

    /// Reads overlay bytes (only ranges `runs` reported as in the overlay).
    public func read(offset: UInt64, into out: UnsafeMutableRawBufferPointer) throws {
        try using { try readFile(offset: offset, into: out) }
    }

    private func readFile(offset: UInt64, into out: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < out.count {
            let n = pread(fd, out.baseAddress! + done, out.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw OverlayError("overlay read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                // Past the written end of a sparse file: zeros.
                (out.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: 0, count: out.count - done)
                return
            }
            done += n
        }
    }

    private func pwriteAll(_ p: UnsafeRawPointer, _ count: Int, _ offset: UInt64) throws {
        var done = 0
        while done < count {
            let n = pwrite(fd, p + done, count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw OverlayError("overlay write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// Copies the partly covered edge blocks of [offset, end) from the
    /// revision into the overlay if it does not hold them yet. Lock held.
    private func fillEdges(_ offset: UInt64, _ end: UInt64, base: BaseReader) throws {
        let bs = UInt64(Overlay.blockSize)
        var edges: [Int] = []
        let first = Int(offset / bs)
        let last = Int((end - 1) / bs)
        if offset % bs != 0 { edges.append(first) }
        let lastEnd = min(UInt64(last + 1) * bs, size)
        if end < lastEnd && !(edges.first == last) { edges.append(last) }
        for b in edges where !has(b) {
            let start = UInt64(b) * bs
            let len = Int(min(bs, size - start))
            let tmp = UnsafeMutableRawBufferPointer.allocate(byteCount: len, alignment: 16)
            defer { tmp.deallocate() }
            try base(start, tmp)
            try pwriteAll(tmp.baseAddress!, len, start)
        }
    }

    /// Writes client data at `offset` (the range must lie in the image).
    public func write(offset: UInt64, data: UnsafeRawBufferPointer, base: BaseReader) throws {
        guard data.count > 0 else { return }
        let end = offset + UInt64(data.count)
        precondition(end <= size)
        try using {
            lock.lock(); defer { lock.unlock() }
            try charging(offset, UInt64(data.count)) {
                try fillEdges(offset, end, base: base)
                try pwriteAll(data.baseAddress!, data.count, offset)
            }
            mark(Int(offset / UInt64(Overlay.blockSize)), Int((end - 1) / UInt64(Overlay.blockSize)))
        }
    }

    /// Makes [offset, offset + length) read as zeros (WRITE_ZEROES, TRIM).
    public func zero(offset: UInt64, length: UInt64, base: BaseReader) throws {
        guard length > 0 else { return }
        let end = offset + length
        precondition(end <= size)
        try using {
            lock.lock(); defer { lock.unlock() }
            // Only the partly covered edge blocks can take space.
            try charging(offset, min(length, 2 * UInt64(Overlay.blockSize))) {
                try zeroFile(offset, length, end, base: base)
            }
            mark(Int(offset / UInt64(Overlay.blockSize)), Int((end - 1) / UInt64(Overlay.blockSize)))
        }
    }

    private func zeroFile(_ offset: UInt64, _ length: UInt64, _ end: UInt64, base: BaseReader) throws {
        try fillEdges(offset, end, base: base)
        // Punch a hole (reads as zeros, frees space); fall back to writing zeros.
        let punched = Overlay.punchHole(fd, offset, length)
        if !punched {
            let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { zeros.deallocate() }
            zeros.initializeMemory(as: UInt8.self, repeating: 0)
            var pos = offset
            while pos < end {
                let n = Int(min(UInt64(zeros.count), end - pos))
                try pwriteAll(zeros.baseAddress!, n, pos)
                pos += UInt64(n)
            }
        }
    }
}

extension Overlay {
    private typealias FallocateFn = @convention(c) (Int32, Int32, Int64, Int64) -> Int32
    /// Linux fallocate(2), looked up at run time (Glibc's Swift module does
    /// not export the GNU declaration).
    private static let fallocateFn: FallocateFn? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fallocate64") ?? dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fallocate") else { return nil }
        return unsafeBitCast(sym, to: FallocateFn.self)
    }()

    /// FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: the range reads as zeros.
    static func punchHole(_ fd: Int32, _ offset: UInt64, _ length: UInt64) -> Bool {
        guard let f = fallocateFn else { return false }
        return f(fd, 0x02 | 0x01, Int64(offset), Int64(length)) == 0
    }
}

public struct OverlayError: Error, CustomStringConvertible {
    public let description: String
    init(_ s: String) { description = s }
}
