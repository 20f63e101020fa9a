// ChunkWriter: the parallel write half of a backup. Worker threads read
// chunks from a source callback into their own buffers, skip all-zero ones,
// hash the rest, pin them for purge, and store the ones the store lacks (or
// all of them once each while revisions are distrusted). Memory stays at a
// few buffers per worker whatever the image size.
import Foundation
import Logging

public final class ChunkWriter: @unchecked Sendable {
    public struct Stats: Sendable {
        public var chunksRead = 0
        public var chunksZero = 0
        public var chunksWritten = 0
        public var chunksReused = 0
        public var bytesRead: Int64 = 0
        public var bytesStored: Int64 = 0
        public init() {}
    }

    private struct State {
        var handled = Set<ChunkID>()
        var written: [ChunkID: Int] = [:]
        var prefixes = Set<UInt8>()
        var stats = Stats()
    }

    public let job: Job
    public let session: PinSession
    public let threads: Int
    /// Rewrite every chunk once even if its file exists (distrust healing).
    public let forceRewrite: Bool
    private let state = Locked(State())
    /// The committer of the last `process` call, still renaming its files
    /// until `finishCommits()`.
    private let committer = Locked<Committer?>(nil)
    private let commitFailure = Locked<Error?>(nil)
    /// XXH64 of each chunk this writer read (0 = not read), for the
    /// verification pass.
    public private(set) var fastHashes: [UInt64] = []
    /// Where the bytes read are reported (nil: nowhere).
    public var progress: ProgressMeter?

    public init(job: Job, session: PinSession, threads: Int = Parallel.defaultThreads, forceRewrite: Bool) {
        self.job = job
        self.session = session
        self.threads = threads
        self.forceRewrite = forceRewrite
    }

    public var stats: Stats { state.get.stats }
    /// Chunks stored by this run, with the first chunk index that produced each.
    public var written: [ChunkID: Int] { state.get.written }

    /// Reads, hashes and stores the chunks at `indices` of `map` (whose
    /// image size is already set); fills in their ids. `read(i, buffer)` must
    /// fill the buffer with the chunk's bytes and return how many it read; it
    /// is called from several threads at once.
    public func process(indices: [Int], map: inout ChunkMap,
                        read: @escaping (Int, UnsafeMutableRawBufferPointer) throws -> Int) throws {
        try process(indices: indices, map: &map) { i, buf, _ in try read(i, buf) }
    }

    /// Like `process(indices:map:read:)`; the callback also gets the worker's
    /// workspace to use as scratch (its `file` buffer is free while reading).
    public func process(indices: [Int], map: inout ChunkMap,
                        read: @escaping (Int, UnsafeMutableRawBufferPointer, ChunkWorkspace) throws -> Int) throws {
        let m = map
        try process(indices: indices, map: &map) { i, ws, body in
            let len = m.length(of: i)
            let buf = UnsafeMutableRawBufferPointer(rebasing: ws.data[0..<len])
            let got = try read(i, buf, ws)
            if got != len {
                throw BackyError(.io, "short read from source at offset \(m.offset(of: i)): \(got) of \(len) bytes (did the source shrink?)")
            }
            try body(UnsafeRawBufferPointer(buf), nil)
        }
    }

    /// Like `process(indices:map:read:)`, for sources that fill the chunk
    /// themselves: `view(i, workspace, body)` calls `body` with exactly the
    /// chunk's bytes, which stay valid during the call, and with their id and
    /// XXH64 if it computed them while reading (a `ChunkDigester`), else nil.
    public func process(indices: [Int], map: inout ChunkMap,
                        view: @escaping (Int, ChunkWorkspace, (UnsafeRawBufferPointer, (id: ChunkID, fast: UInt64)?) throws -> Void) throws -> Void) throws {
        let count = map.chunks.count
        let ids = UnsafeMutableBufferPointer<ChunkID>.allocate(capacity: count)
        defer { ids.deallocate() }
        _ = ids.initialize(from: map.chunks)
        if fastHashes.count != count { fastHashes = [UInt64](repeating: 0, count: count) }
        let fast = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: count)
        defer { fast.deallocate() }
        _ = fast.initialize(from: fastHashes)
        try finishCommits()
        let m = map
        let store = job.store
        let jobPath = job.path
        let committer = Committer(store: store)
        let progress = self.progress
        progress?.expect(indices.reduce(Int64(0)) { $0 + Int64(m.length(of: $1)) })
        var ok = false
        defer { if !ok { committer.stop() } }
        try Parallel.forEach(count: indices.count, threads: threads,
                             setup: { _ in (ChunkWorkspace(), Gate(jobPath: jobPath)) }) { w, k in
            let (ws, gate) = w
            let i = indices[k]
            let len = m.length(of: i)
            defer { progress?.add(Int64(len)) }
            try view(i, ws) { buf, digest in
                guard buf.count == len else {
                    throw BackyError(.io, "short read from source at offset \(m.offset(of: i)): \(buf.count) of \(len) bytes (did the source shrink?)")
                }
                let id = digest?.id ?? ChunkHash.id(of: buf)
                ids[i] = id
                if id.isZero {
                    self.state.with { $0.stats.chunksRead += 1; $0.stats.chunksZero += 1; $0.stats.bytesRead += Int64(len) }
                    return
                }
                fast[i] = digest?.fast ?? FastHash.xxh64(buf)
                let first = self.state.with { s -> Bool in
                    s.stats.chunksRead += 1
                    s.stats.bytesRead += Int64(len)
                    return s.handled.insert(id).inserted
                }
                if !first {
                    self.state.with { $0.stats.chunksReused += 1 }
                    return
                }
                let exists = try gate.shared { () throws -> Bool in
                    try self.session.pin(id)
                    return store.exists(id)
                }
                if exists && !self.forceRewrite {
                    self.state.with { $0.stats.chunksReused += 1 }
                    return
                }
                // Encode and write here; fsync and rename on a committer
                // thread, so this worker goes on hashing while the disk flushes.
                let pending = try store.writeUnsynced(id, data: buf, workspace: ws, tag: self.session.id)
                try committer.submit(pending)
                self.state.with { s in
                    s.stats.chunksWritten += 1
                    s.stats.bytesStored += Int64(pending.size)
                    s.written[id] = i
                    s.prefixes.insert(UInt8(id.w0 >> 56))
                }
            }
        }
        map.chunks = Array(ids)
        fastHashes = Array(fast)
        // The last files may still be flushing: callers go on (verification
        // of unchanged blocks) and call `finishCommits()` before they read
        // a chunk this run stored or write the map.
        self.committer.with { $0 = committer }
        ok = true
    }

    /// Waits until every chunk file of this run is fsynced and renamed into
    /// place; rethrows a failure. Thread-safe; later calls return at once
    /// (or rethrow the same failure).
    public func finishCommits() throws {
        try committer.with { c in
            if let pending = c {
                c = nil
                do { try pending.finish() } catch { commitFailure.with { $0 = error } }
                pending.stop()
            }
        }
        if let e = commitFailure.get { throw e }
    }

    /// Makes this run's chunk files and their renames durable.
    public func makeDurable() throws {
        try finishCommits()
        try job.store.syncDirectories(state.get.prefixes)
    }

    deinit {
        // After a failure between `process` and `makeDurable`: stop the
        // committer threads (files not yet renamed are dropped).
        committer.with { $0?.stop() }
    }
}

/// Threads that fsync and rename chunk files written by the workers. At most
/// `limit` files wait; a failure is reported by the next `submit` or by
/// `finish`.
final class Committer: @unchecked Sendable {
    let store: ChunkStore
    private let cond = NSCondition()
    private var queue: [ChunkStore.PendingChunk] = []
    private var busy = 0
    private var failure: Error?
    private var stopping = false
    private var threads: [pthread_t] = []
    private let limit: Int

    init(store: ChunkStore, threads n: Int = 2, limit: Int = 16) {
        self.store = store
        self.limit = limit
        for _ in 0..<n {
            var t = pthread_t()
            let box = Unmanaged.passRetained(self)
            if pthread_create(&t, nil, { arg in
                let c = Unmanaged<Committer>.fromOpaque(arg!).takeRetainedValue()
                c.loop()
                return nil
            }, box.toOpaque()) == 0 {
                threads.append(t)
            } else {
                box.release()
            }
        }
    }

    private func loop() {
        while true {
            cond.lock()
            while queue.isEmpty && !stopping { cond.wait() }
            if queue.isEmpty && stopping { cond.unlock(); return }
            let p = queue.removeFirst()
            busy += 1
            let failed = failure != nil
            cond.unlock()
            var err: Error?
            if failed {
                store.abandon(p)
            } else {
                do { try store.commit(p) } catch { err = error }
            }
            cond.lock()
            busy -= 1
            if let err, failure == nil { failure = err }
            cond.broadcast()
            cond.unlock()
        }
    }

    func submit(_ p: ChunkStore.PendingChunk) throws {
        cond.lock()
        defer { cond.unlock() }
        if threads.isEmpty {
            cond.unlock()
            defer { cond.lock() }
            try store.commit(p)
            return
        }
        while queue.count >= limit && failure == nil { cond.wait() }
        if let f = failure {
            store.abandon(p)
            throw f
        }
        queue.append(p)
        cond.broadcast()
    }

    /// Waits until every submitted file is committed; rethrows a failure.
    func finish() throws {
        cond.lock()
        while !queue.isEmpty || busy > 0 { cond.wait() }
        let f = failure
        cond.unlock()
        if let f { throw f }
    }

    /// Stops the threads (after abandoning anything left after a failure).
    func stop() {
        cond.lock()
        stopping = true
        if failure == nil && !queue.isEmpty { failure = BackyError(.other, "stopped") }
        cond.broadcast()
        cond.unlock()
        for t in threads { pthread_join(t, nil) }
        threads = []
    }
}
