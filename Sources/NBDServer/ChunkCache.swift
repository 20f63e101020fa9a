// ChunkCache: a small LRU cache of decoded, hash-checked chunks shared by
// all connections. Chunks are keyed by what the image names them
// (ChunkKey): stored chunks by content, so revisions and clients that share
// chunks share cache entries; other bytes by their image and range. A chunk being loaded is loaded once:
// later requesters queue a callback. Entries are NIO ByteBuffers, so replies
// send slices of them without copying; an evicted chunk's memory lives on
// only while a reply still references it.
import ChunkStore
import Foundation
import NIOCore

public final class ChunkCache: @unchecked Sendable {  // unchecked: all mutable state is guarded by `lock`
    public typealias Key = ChunkKey

    public typealias Callback = (Result<ByteBuffer, Error>) -> Void

    private enum Entry {
        case loading([Callback])
        case ready(ByteBuffer, UInt64)
    }

    private let lock = NSLock()
    private var entries: [Key: Entry] = [:]
    private var readyCount = 0
    private var clock: UInt64 = 0
    public let capacity: Int
    let pool: WorkerPool
    let allocator = ByteBufferAllocator()

    /// Counters for tests and the log, changed under the lock (workers and
    /// event loops count), so read under it too.
    private var hitCount = 0
    private var loadCount = 0
    public var hits: Int { lock.withLock { hitCount } }
    public var loads: Int { lock.withLock { loadCount } }

    public init(capacity: Int, pool: WorkerPool) {
        self.capacity = max(1, capacity)
        self.pool = pool
    }

    public static func key(_ image: ImageReader, _ i: Int) -> Key { image.chunkKey(i) }

    /// The chunk if it is cached (and marks it used).
    public func lookup(_ key: Key) -> ByteBuffer? {
        lock.lock(); defer { lock.unlock() }
        if case .ready(let b, _)? = entries[key] {
            clock += 1
            entries[key] = .ready(b, clock)
            hitCount += 1
            return b
        }
        return nil
    }

    /// Returns the chunk at once if cached; otherwise arranges for it to be
    /// loaded (once) and calls `done` on a worker thread, and returns nil.
    public func get(_ image: ImageReader, _ i: Int, priority: WorkerPool.Priority = .demand,
                    _ done: @escaping Callback) -> ByteBuffer? {
        let key = ChunkCache.key(image, i)
        lock.lock()
        switch entries[key] {
        case .ready(let b, _)?:
            clock += 1
            entries[key] = .ready(b, clock)
            hitCount += 1
            lock.unlock()
            return b
        case .loading(var cbs)?:
            cbs.append(done)
            entries[key] = .loading(cbs)
            lock.unlock()
            return nil
        case nil:
            entries[key] = .loading([done])
            loadCount += 1
            lock.unlock()
            pool.submit(priority) { [self] ws in load(image, i, key, ws) }
            return nil
        }
    }

    /// Starts loading chunk `i` in the background unless it is cached or
    /// on its way. Returns whether a load was started.
    @discardableResult
    public func prefetch(_ image: ImageReader, _ i: Int) -> Bool {
        let key = ChunkCache.key(image, i)
        // No read-ahead when chunk memory is at its limit.
        if ChunkMemory.liveSlabs >= capacity { return false }
        lock.lock()
        if entries[key] != nil {
            lock.unlock()
            return false
        }
        entries[key] = .loading([])
        loadCount += 1
        lock.unlock()
        pool.submit(.prefetch) { [self] ws in load(image, i, key, ws) }
        return true
    }

    /// Reads chunk `i` on the calling (worker) thread unless it is cached.
    /// Never waits for another thread, so it cannot deadlock the pool.
    public func getNow(_ image: ImageReader, _ i: Int, workspace ws: ChunkWorkspace) throws -> ByteBuffer {
        let key = ChunkCache.key(image, i)
        if let b = lookup(key) { return b }
        let b = try Self.read(image, i, ws, allocator)
        lock.lock()
        if entries[key] == nil { insertReady(key, b) }
        lock.unlock()
        return b
    }

    static func read(_ image: ImageReader, _ i: Int, _ ws: ChunkWorkspace, _ allocator: ByteBufferAllocator) throws -> ByteBuffer {
        let len = image.length(of: i)
        // Chunk-sized buffers come from ChunkMemory's recycled slabs.
        var buf = image.chunkSize <= ChunkMemory.slabSize
            ? ChunkMemory.allocator.buffer(capacity: ChunkMemory.slabSize)
            : allocator.buffer(capacity: len)
        let n = try buf.writeWithUnsafeMutableBytes(minimumWritableBytes: len) { out in
            try image.read(i, into: out, workspace: ws)
        }
        if n != len {
            throw ChunkReadError(id: .zero, fault: .corrupt("read \(n) bytes of chunk \(i), expected \(len)"))
        }
        return buf
    }

    private func load(_ image: ImageReader, _ i: Int, _ key: Key, _ ws: ChunkWorkspace) {
        let result: Result<ByteBuffer, Error>
        do {
            result = .success(try Self.read(image, i, ws, allocator))
        } catch {
            result = .failure(error)
        }
        lock.lock()
        var cbs: [Callback] = []
        if case .loading(let c)? = entries[key] { cbs = c }
        switch result {
        case .success(let b): insertReady(key, b)
        case .failure: entries[key] = nil  // not cached: the next read tries again
        }
        lock.unlock()
        for cb in cbs { cb(result) }
    }

    /// Call with the lock held.
    private func insertReady(_ key: Key, _ b: ByteBuffer) {
        if case .ready? = entries[key] {} else { readyCount += 1 }
        clock += 1
        entries[key] = .ready(b, clock)
        // Chunk memory outside the cache (evicted chunks a reply still
        // sends, loads in progress, slabs kept for reuse) counts against its
        // capacity, and room is kept for one load per worker: all chunk
        // memory together stays within it.
        let outside = max(0, ChunkMemory.mappedSlabs - readyCount)
        while readyCount > max(1, capacity - outside - pool.count) {
            var oldest: (Key, UInt64)?
            for (k, e) in entries {
                if case .ready(_, let t) = e, oldest == nil || t < oldest!.1 { oldest = (k, t) }
            }
            guard let o = oldest else { break }
            entries[o.0] = nil
            readyCount -= 1
        }
    }

    /// Chunks currently cached.
    public var count: Int {
        lock.lock(); defer { lock.unlock() }
        return readyCount
    }
}
