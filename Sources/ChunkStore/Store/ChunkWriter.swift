// ChunkWriter: the parallel write half of a backup, and the owner of its
// pipeline. Sources hand it blocks through one entry point (`store`):
// worker threads get each block's bytes from the source into their own
// buffers, skip all-zero ones, hash the rest, pin them for purge and test the
// store (StoreSession.pinThenTest), and encode and put the chunks the store
// lacks (or all of them once each while revisions are distrusted); committer
// threads make the puts visible while the workers go on. What the writer
// records (the chunks it stored, the XXH64 of each block) is read by
// BackupCheck, the post-backup verification. Memory stays at a few buffers
// per worker whatever the image size.
import Foundation
import Logging

// @unchecked Sendable: counters live in `Locked`; `fastHashes` and `progress` are changed only by the one thread that calls store(), outside its worker threads' run.
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

    /// A block as a source delivers it: its bytes are `workspace.data[0..<length]`;
    /// `digest` is its id and XXH64 if the source computed them while reading
    /// (ChunkDigester), else nil.
    public struct Block {
        public var length: Int
        public var digest: (id: ChunkID, fast: UInt64)?

        public init(length: Int, digest: (id: ChunkID, fast: UInt64)? = nil) {
            self.length = length
            self.digest = digest
        }
    }

    private struct State {
        var handled = Set<ChunkID>()
        var written: [ChunkID: Int] = [:]
        var stats = Stats()
    }

    public let job: Job
    public let session: StoreSession
    public let threads: Int
    /// zstd level of the chunks it stores.
    public let zstdLevel: Int32
    /// Rewrite every chunk once even if it is stored (distrust healing).
    public let forceRewrite: Bool
    private let state = Locked(State())
    /// The committer of the last `store` call, still committing its puts
    /// until `finishCommits()`.
    private let committer = Locked<Committer?>(nil)
    private let commitFailure = Locked<Error?>(nil)
    /// XXH64 of each block this writer read (0 = not read), for the
    /// verification (BackupCheck).
    private(set) var fastHashes: [UInt64] = []
    /// Where the bytes read are reported (nil: nowhere).
    public var progress: ProgressMeter?

    public init(job: Job, session: StoreSession, threads: Int = Parallel.cores,
                zstdLevel: Int32 = DataPathOptions.defaultZstdLevel, forceRewrite: Bool) {
        self.job = job
        self.session = session
        self.threads = max(1, threads)
        self.zstdLevel = zstdLevel
        self.forceRewrite = forceRewrite
    }

    public convenience init(job: Job, session: StoreSession, options: DataPathOptions, forceRewrite: Bool) {
        self.init(job: job, session: session, threads: options.threads, zstdLevel: options.zstdLevel,
                  forceRewrite: forceRewrite)
    }

    public var stats: Stats { state.get.stats }
    /// Chunks stored by this run, with the first chunk index that produced each.
    public var written: [ChunkID: Int] { state.get.written }

    /// Reads, hashes and stores the blocks at `indices` of `map` (whose image
    /// size is already set) and fills in their ids. `read(i, workspace)`
    /// puts block `i`'s bytes into `workspace.data` (its `file` buffer is
    /// free as scratch) and says how many; it is called from several
    /// threads at once. A block shorter than the map says is an error.
    public func store(_ indices: [Int], of map: inout ChunkMap,
                      read: @escaping (Int, ChunkWorkspace) throws -> Block) throws {
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
        let backend = job.backend
        let level = zstdLevel
        let committer = Committer()
        let progress = self.progress
        progress?.expect(indices.reduce(Int64(0)) { $0 + Int64(m.length(of: $1)) })
        var ok = false
        defer { if !ok { committer.stop() } }
        try Parallel.forEach(count: indices.count, threads: threads,
                             setup: { _ in (ChunkWorkspace(level: level), backend.makeGate()) }) { w, k in
            let (ws, gate) = w
            let i = indices[k]
            let len = m.length(of: i)
            defer { progress?.add(Int64(len)) }
            let block = try read(i, ws)
            guard block.length == len else {
                throw BackyError(.io, "short read from source at offset \(m.offset(of: i)): \(block.length) of \(len) bytes (did the source shrink?)")
            }
            let buf = UnsafeRawBufferPointer(rebasing: ws.data[0..<len])
            let id = block.digest?.id ?? ChunkHash.id(of: buf)
            ids[i] = id
            if id.isZero {
                self.state.with { $0.stats.chunksRead += 1; $0.stats.chunksZero += 1; $0.stats.bytesRead += Int64(len) }
                return
            }
            fast[i] = block.digest?.fast ?? FastHash.xxh64(buf)
            let first = self.state.with { s -> Bool in
                s.stats.chunksRead += 1
                s.stats.bytesRead += Int64(len)
                return s.handled.insert(id).inserted
            }
            if !first {
                self.state.with { $0.stats.chunksReused += 1 }
                return
            }
            let exists = try self.session.pinThenTest(id, in: store.chunks, gate: gate)
            if exists && !self.forceRewrite {
                self.state.with { $0.stats.chunksReused += 1 }
                return
            }
            // Encode and put here; commit on a committer thread, so this
            // worker goes on hashing while the disk flushes.
            let pending = try store.beginWrite(id, data: buf, workspace: ws, session: self.session.id)
            try committer.submit(pending)
            self.state.with { s in
                s.stats.chunksWritten += 1
                s.stats.bytesStored += Int64(pending.size)
                s.written[id] = i
            }
        }
        map.chunks = Array(ids)
        fastHashes = Array(fast)
        // The last puts may still be committing: verification of blocks
        // this run did not store goes on meanwhile; BackupCheck waits for
        // them (finishCommits) before it reads a chunk back.
        self.committer.with { $0 = committer }
        ok = true
    }

    /// Waits until every chunk of this run is committed (in place);
    /// rethrows a failure. Thread-safe; later calls return at once (or
    /// rethrow the same failure).
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

    /// Makes this run's chunks durable (before a map names them).
    public func makeDurable() throws {
        try finishCommits()
        try job.store.makeDurable(Array(state.get.written.keys))
    }

    deinit {
        // After a failure between `store` and `makeDurable`: stop the
        // committer threads (puts not yet committed are abandoned).
        committer.with { $0?.stop() }
    }
}
