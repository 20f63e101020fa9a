// Upgrader: `backy upgrade`. Converts revisions written by backy 2.x (JSON
// map + MurmurHash3/LZO chunks, or cowfile raw images) to the native format,
// newest first, keeping ids, timestamps, tags, trust, parents and stats.
// Resumable and idempotent: a revision switches format only after its new map
// is durable and verified; a run interrupted anywhere is finished by the next.
import ChunkStore
import Foundation
import Logging
import Presentation

public final class Upgrader {
    public let job: Job
    public let log: Logger
    public let threads: Int
    /// Called with a line for the operator (stdout in the CLI).
    public var say: (String) -> Void = { _ in }
    /// Where the bytes converted are reported (nil: nowhere).
    public var progress: ProgressMeter?

    public init(job: Job, log: Logger = Logger(label: "backy"), threads: Int = Parallel.defaultThreads) {
        self.job = job
        self.log = log
        self.threads = threads
    }

    public static func isLegacy(_ r: Revision) -> Bool { r.backend == .legacyChunked || r.backend == .cowfile }

    /// Converts every complete legacy revision, newest first. The caller
    /// holds `.backup` exclusively. Returns the ids converted.
    @discardableResult
    public func run() throws -> [String] {
        try finishInterrupted()
        var done: [String] = []
        let todo = try job.history().filter(Upgrader.isLegacy).reversed()
        say("Found \(todo.count) revisions to upgrade.")
        for rev in todo {
            say("Converting \(rev.id) from \(Timestamp.format(rev.timestamp))")
            try convert(rev)
            done.append(rev.id)
        }
        return done
    }

    /// Removes backy 2.4 files of revisions already converted (a run killed
    /// between switching a revision and removing its old file).
    func finishInterrupted() throws {
        for rev in try job.scan() where rev.backend == .native {
            let old = job.legacyImagePath(rev.id)
            if Posix.exists(old) {
                log.info("Removing the old data file of upgraded revision \(rev.id)")
                try Posix.unlinkIfPresent(old)
            }
        }
    }

    /// Converts one complete legacy revision.
    public func convert(_ rev: Revision) throws {
        precondition(Upgrader.isLegacy(rev))
        let started = Date()
        let session = try PinSession(jobPath: job.path)
        defer { session.close() }
        if let mp = job.pinnableMapPath(rev) {
            try Gate(jobPath: job.path).shared { try session.pinMap(revision: rev.id, mapPath: mp) }
        }
        try job.store.create()
        let image = try job.openImage(rev)
        var map = ChunkMap(zeroImageOfSize: image.imageSize)
        let indices = (0..<image.chunkCount).filter { !image.isZero($0) }
        let writer = ChunkWriter(job: job, session: session, threads: threads, forceRewrite: false)
        writer.progress = progress
        progress?.start("upgrade \(rev.id)", total: 0)
        defer { progress?.finish() }
        try writer.process(indices: indices, map: &map) { i, buf, ws in
            try image.read(i, into: buf, workspace: ws)
        }
        try writer.makeDurable()
        try verify(image: image, map: map, writer: writer)
        try map.write(path: job.mapPath(rev.id))
        try job.updateRevisions([rev.id]) { r in
            r.stats["upgraded_from"] = .string(r.backend.name)
            r.stats["upgraded_at"] = .string(Timestamp.format(Date()))
            r.backend = .native
        }
        try Posix.unlinkIfPresent(job.legacyImagePath(rev.id))
        try Posix.fsyncDirectory(job.path)
        let s = writer.stats
        log.info("Converted \(rev.id): \(map.chunks.count) chunks, \(s.chunksWritten) written (\(ByteFormat.flexible(s.bytesStored))), \(s.chunksReused) reused; \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
    }

    /// Reads the old revision again and checks the new map against it: each
    /// block by the XXH64 the conversion recorded, and each chunk stored by
    /// this conversion read back byte for byte.
    func verify(image: ImageReader, map: ChunkMap, writer: ChunkWriter) throws {
        let fast = writer.fastHashes
        let written = writer.written
        let store = job.store
        let bad = Locked<[String]>([])
        try Parallel.forEach(count: map.chunks.count, threads: threads,
                             setup: { _ in ChunkWorkspace() }) { ws, i in
            let second = ws.spare
            let expected = map.chunks[i]
            // backy 2.4's zero chunk is zeros by the old image's own map;
            // any other chunk is read again, also one that was zeros.
            if expected.isZero && image.isZero(i) { return }
            let len = map.length(of: i)
            _ = try image.read(i, into: ws.data, workspace: ws)
            let buf = UnsafeRawBufferPointer(rebasing: ws.data[0..<len])
            if expected.isZero {
                if !ChunkHash.isAllZero(buf) { bad.with { $0.append("chunk \(i) was zeros at the first read, not at the second") } }
            } else if written[expected] == i {
                let n = try store.read(expected, into: second, workspace: ws, checkHash: false)
                if n != len || memcmp(second.baseAddress!, buf.baseAddress!, len) != 0 {
                    bad.with { $0.append("chunk \(i) does not read back") }
                }
            } else if FastHash.xxh64(buf) != fast[i] {
                bad.with { $0.append("chunk \(i) differs on the second read") }
            }
        }
        if let first = bad.get.first {
            throw BackyError(.verification, "upgrade verification failed: \(bad.get.count) chunks (first: \(first))")
        }
    }
}
