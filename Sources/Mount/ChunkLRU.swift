// ChunkLRU: byte-range reads of a revision's image for the FUSE threads,
// through a small least-recently-used cache of decoded, hash-checked chunks
// (fuse2fs and the checkers read in small blocks; decoding a 4 MiB chunk per
// 4 KiB block would be hopeless). A chunk is loaded once even when several
// threads want it at the same time; zero chunks are never cached. A read that
// reaches into the second half of a chunk starts loading the next one in the
// background, and the two after it (sequential readers then rarely wait for
// a decode).
import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: slots, LRU clock, counters, workspaces and prefetch state are read and changed only under `cond`; `onError` is set once before the first read.
public final class ChunkLRU: @unchecked Sendable {
    /// Chunk-sized buffers for reuse (a few; the rest are freed).
    // @unchecked Sendable: `spare` is read and changed only under `lock`; the buffers it holds have no other owner.
    final class BufferPool: @unchecked Sendable {
        let size: Int
        private let lock = NSLock()
        private var spare: [UnsafeMutableRawBufferPointer] = []

        init(size: Int) { self.size = size }

        func take() -> UnsafeMutableRawBufferPointer {
            lock.lock()
            let b = spare.popLast()
            lock.unlock()
            return b ?? .allocate(byteCount: size, alignment: 4096)
        }

        func give(_ b: UnsafeMutableRawBufferPointer) {
            lock.lock()
            if spare.count < 4 {
                spare.append(b)
                lock.unlock()
            } else {
                lock.unlock()
                b.deallocate()
            }
        }

        deinit { for b in spare { b.deallocate() } }
    }

    /// A decoded chunk. Readers copy from it outside the lock; eviction only
    /// drops the cache's reference, and the buffer goes back to the pool
    /// when the last reader is done.
    final class Entry {
        let buffer: UnsafeMutableRawBufferPointer
        let length: Int
        var lastUse: UInt64 = 0
        private let pool: BufferPool

        init(buffer: UnsafeMutableRawBufferPointer, length: Int, pool: BufferPool) {
            self.buffer = buffer
            self.length = length
            self.pool = pool
        }

        deinit { pool.give(buffer) }
    }

    private enum Slot {
        case loading
        case ready(Entry)
    }

    public let image: ImageReader
    /// Chunks kept decoded.
    public let capacity: Int
    private let cond = NSCondition()
    private var slots: [Int: Slot] = [:]
    private var readyCount = 0
    private var clock: UInt64 = 0
    private let pool: BufferPool
    private var workspaces: [ChunkWorkspace] = []
    private let prefetchQueue = DispatchQueue(label: "backy-mount-prefetch", attributes: .concurrent)
    private var prefetching = 0
    /// Chunks loaded ahead of a sequential reader, and at most that many
    /// loads in the background (two cores decode while the reader copies).
    private let prefetchDepth = 3
    private let maxPrefetching = 3

    /// Counters (for tests and the log).
    private var loadCount = 0
    private var failureCount = 0
    public var loads: Int { cond.lock(); defer { cond.unlock() }; return loadCount }
    public var failures: Int { cond.lock(); defer { cond.unlock() }; return failureCount }

    /// Called with each chunk that cannot be read (for the log).
    public var onError: (@Sendable (Int, Error) -> Void)?

    public init(image: ImageReader, capacity: Int) {
        self.image = image
        self.capacity = max(2, capacity)
        pool = BufferPool(size: image.chunkSize)
    }

    /// Copies `count` bytes at image offset `offset` into `dst`; returns the
    /// number copied (less only at the end of the image). Throws the chunk
    /// read error of a damaged chunk.
    public func read(into dst: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws -> Int {
        guard offset < image.imageSize, count > 0 else { return 0 }
        let total = Int(min(UInt64(count), image.imageSize - offset))
        let cs = UInt64(image.chunkSize)
        var done = 0
        while done < total {
            let pos = offset + UInt64(done)
            let i = Int(pos / cs)
            let inChunk = Int(pos % cs)
            let n = min(total - done, image.length(of: i) - inChunk)
            if image.isZero(i) {
                memset(dst + done, 0, n)
            } else {
                let e = try chunk(i)
                guard inChunk + n <= e.length else {
                    throw ChunkReadError(id: .zero, fault: .corrupt("chunk \(i) has \(e.length) bytes, the image needs \(inChunk + n)"))
                }
                memcpy(dst + done, e.buffer.baseAddress! + inChunk, n)
            }
            done += n
            if inChunk + n > image.chunkSize / 2 {
                for k in (i + 1)..<min(i + 1 + prefetchDepth, image.chunkCount) { prefetch(k) }
            }
        }
        return total
    }

    /// The decoded chunk `i`, loading it if needed (once for all threads).
    func chunk(_ i: Int) throws -> Entry {
        cond.lock()
        while true {
            switch slots[i] {
            case .ready(let e)?:
                clock += 1
                e.lastUse = clock
                cond.unlock()
                return e
            case .loading?:
                cond.wait()
            case nil:
                slots[i] = .loading
                cond.unlock()
                return try load(i)
            }
        }
    }

    /// Loads chunk `i` (its slot is `.loading`, owned by this thread).
    private func load(_ i: Int) throws -> Entry {
        let buffer = pool.take()
        cond.lock()
        let ws = workspaces.popLast() ?? ChunkWorkspace(chunkSize: image.chunkSize)
        loadCount += 1
        cond.unlock()
        let result: Result<Int, Error>
        do {
            result = .success(try image.read(i, into: buffer, workspace: ws))
        } catch {
            result = .failure(error)
        }
        cond.lock()
        workspaces.append(ws)
        switch result {
        case .success(let n):
            let e = Entry(buffer: buffer, length: n, pool: pool)
            clock += 1
            e.lastUse = clock
            slots[i] = .ready(e)
            readyCount += 1
            let evicted = evict()
            cond.broadcast()
            cond.unlock()
            _ = evicted  // released here, outside the lock
            return e
        case .failure(let error):
            // Not cached: the next read tries again (and fails again, with
            // the same hash-checked verdict).
            slots[i] = nil
            failureCount += 1
            cond.broadcast()
            cond.unlock()
            pool.give(buffer)
            onError?(i, error)
            throw error
        }
    }

    /// Drops least recently used chunks beyond the capacity and returns
    /// them (the caller releases them after unlocking). Lock held.
    private func evict() -> [Entry] {
        var out: [Entry] = []
        while readyCount > capacity {
            var oldest: (Int, Entry)?
            for (k, s) in slots {
                if case .ready(let e) = s, oldest == nil || e.lastUse < oldest!.1.lastUse { oldest = (k, e) }
            }
            guard let o = oldest else { break }
            slots[o.0] = nil
            readyCount -= 1
            out.append(o.1)
        }
        return out
    }

    /// Starts loading chunk `i` in the background unless it is cached, on
    /// its way, zero, or `maxPrefetching` loads already run.
    public func prefetch(_ i: Int) {
        guard !image.isZero(i) else { return }
        cond.lock()
        guard slots[i] == nil, prefetching < maxPrefetching else {
            cond.unlock()
            return
        }
        slots[i] = .loading
        prefetching += 1
        cond.unlock()
        prefetchQueue.async { [self] in
            _ = try? load(i)
            cond.lock()
            prefetching -= 1
            cond.unlock()
        }
    }

    /// Chunks currently cached.
    public var count: Int {
        cond.lock(); defer { cond.unlock() }
        return readyCount
    }
}

