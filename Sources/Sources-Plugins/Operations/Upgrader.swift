// Upgrader: `backy upgrade`. Converts revisions written by backy 2.x (JSON
// map + MurmurHash3/LZO chunks, or cowfile raw images) to the native format,
// newest first, keeping ids, timestamps, tags, trust, parents and stats.
// Resumable and idempotent: a revision switches format only after its new map
// is durable and verified (BackupCheck); a run interrupted anywhere is
// finished by the next.
import ChunkStore
import Foundation
import Logging
import Presentation

public final class Upgrader {
    public let job: Job
    public let log: Logger
    public let options: DataPathOptions
    public var threads: Int { options.threads }
    /// Called with a line for the operator (stdout in the CLI).
    public var say: (String) -> Void = { _ in }
    /// Where the bytes converted are reported (nil: nowhere).
    public var progress: ProgressMeter?

    public init(job: Job, log: Logger = Logger(label: "backy"), options: DataPathOptions = DataPathOptions()) {
        self.job = job
        self.log = log
        self.options = options
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

    /// Removes backy 2.4 data of revisions already converted (a run killed
    /// between switching a revision and removing its old data).
    func finishInterrupted() throws {
        for rev in try job.scan() where rev.backend == .native {
            if (try? job.backend.version(of: .legacyData(rev.id))) ?? nil != nil {
                log.info("Removing the old data file of upgraded revision \(rev.id)")
                try job.backend.remove(.legacyData(rev.id), durable: false)
            }
        }
    }

    /// Converts one complete legacy revision.
    public func convert(_ rev: Revision) throws {
        precondition(Upgrader.isLegacy(rev))
        let started = Date()
        let session = try job.backend.openSession()
        defer { session.close() }
        try job.store.create()
        let image = try job.openPinnedImage(rev, session: session)
        var map = ChunkMap(zeroImageOfSize: image.imageSize)
        let indices = (0..<image.chunkCount).filter { !image.isZero($0) }
        let writer = ChunkWriter(job: job, session: session, options: options, forceRewrite: false)
        writer.progress = progress
        progress?.start("upgrade \(rev.id)", total: 0)
        defer { progress?.finish() }
        try writer.store(indices, of: &map) { i, ws in
            ChunkWriter.Block(length: try image.read(i, into: ws.data, workspace: ws))
        }
        try writer.makeDurable()
        try verify(image: image, map: map, writer: writer)
        try job.backend.write(.map(rev.id), map.encode(), durable: true)
        try job.updateRevisions([rev.id]) { r in
            r.stats["upgraded_from"] = .string(r.backend.name)
            r.stats["upgraded_at"] = .string(Timestamp.format(Date()))
            r.backend = .native
        }
        try job.backend.remove(.legacyData(rev.id), durable: true)
        let s = writer.stats
        log.info("Converted \(rev.id): \(map.chunks.count) chunks, \(s.chunksWritten) written (\(ByteFormat.flexible(s.bytesStored))), \(s.chunksReused) reused; \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
    }

    /// Reads the old revision again and checks the new map against it
    /// (BackupCheck): each block by the XXH64 the conversion recorded, and
    /// each chunk stored by this conversion read back byte for byte.
    func verify(image: ImageReader, map: ChunkMap, writer: ChunkWriter) throws {
        let check = BackupCheck(writer: writer, map: map)
        // backy 2.4's zero chunk is zeros by the old image's own map; any
        // other chunk is read again, also one that was zeros.
        let items = check.plan(map.chunks.indices.filter { !(map.chunks[$0].isZero && image.isZero($0)) }
            .map { BackupCheck.Item(index: $0, against: .newRevision) })
        var bad: [String] = []
        for r in try check.run(items, read: { _, i, ws, _ in
            .bytes(length: try image.read(i, into: ws.data, workspace: ws), fast: nil)
        }) {
            let i = r.item.index
            switch r.outcome {
            case .match, .skipped: continue
            case .mismatch(.notZero): bad.append("chunk \(i) was zeros at the first read, not at the second")
            case .mismatch(.storedDiffers): bad.append("chunk \(i) does not read back")
            case .mismatch(.readBackFailed(_, let e)): bad.append("chunk \(i) does not read back: \(e)")
            case .mismatch(.differs(_, _)) where r.readBack: bad.append("chunk \(i) does not read back")
            case .mismatch: bad.append("chunk \(i) differs on the second read")
            }
        }
        if let first = bad.first {
            throw BackyError(.verification, "upgrade verification failed: \(bad.count) chunks (first: \(first))")
        }
    }
}
