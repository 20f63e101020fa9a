// RestoreRun: `backy restore`: find the revision, pin its map for purge,
// and stream it to the target.
import ChunkStore
import Foundation
import Logging
import Presentation

public enum RestoreRun {
    /// What a restore did.
    public struct Outcome {
        /// The revision restored (resolved once, before the restore).
        public let revision: Revision
        /// Chunks a best-effort restore filled with zeros.
        public let damage: [RestoreDamage]
    }

    /// The target rules for restores of `job`: nothing inside a job
    /// directory, not the job's own source, no non-empty file without
    /// `force`. A job whose config cannot be read can still be restored
    /// (then without the source check).
    public static func policy(job: Job, force: Bool) -> RestoreTargetPolicy {
        var source: String? = nil
        if let cfg = try? job.sourceConfig(), cfg["type"]?.string == "file", let f = cfg["filename"]?.string, !f.isEmpty {
            source = f
        }
        return RestoreTargetPolicy(jobPath: job.path, sourcePath: source, force: force)
    }

    @discardableResult
    public static func run(job: Job, spec: String, target: Restorer.Target, bestEffort: Bool = false, force: Bool = false,
                           options: DataPathOptions = DataPathOptions(), log: Logger,
                           progress: ProgressMeter? = nil) throws -> Outcome {
        let rev = try job.findComplete(spec)
        let session = try job.backend.openSession()
        defer { session.close() }
        let image = try job.openPinnedImage(rev, session: session)
        if job.pinnableMap(rev) != nil {
            log.debug("Pinned the chunks of \(rev.id) (session \(session.id)): purge keeps them while this restore runs")
        }
        log.info("Restoring revision \(rev.id) @ \(Timestamp.format(rev.timestamp)) [\(rev.sortedTags.joined(separator: ","))]")
        let started = Date()
        let restorer = Restorer(image: image, options: options, bestEffort: bestEffort,
                                policy: policy(job: job, force: force), log: log)
        restorer.progress = progress
        progress?.start("restore", total: Int64(image.imageSize))
        defer { progress?.finish() }
        let damage = try restorer.run(to: target)
        let secs = Date().timeIntervalSince(started)
        log.info("Restored \(ByteFormat.flexible(Int64(image.imageSize))) in \(String(format: "%.2f", secs)) s")
        return Outcome(revision: rev, damage: damage)
    }

    /// Writes a best-effort restore's damage report (JSON) to `path`, or
    /// beside the job's revisions, and returns where it went.
    public static func writeDamageReport(job: Job, revision: String, target: String, damage: [RestoreDamage], path: String?) throws -> String {
        let now = Date()
        let ranges: [[String: Any]] = damage.map {
            ["offset": $0.offset, "length": $0.length, "end": $0.offset + UInt64($0.length),
             "chunk_index": $0.chunkIndex, "chunk": $0.chunk, "reason": $0.reason]
        }
        let doc: [String: Any] = [
            "revision": revision,
            "target": target,
            "time": Timestamp.iso8601(now),
            "damaged_bytes": damage.reduce(0) { $0 + $1.length },
            "damaged_ranges": ranges,
            "filled_with": "zeros",
        ]
        let data = try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
        let bytes = Array(data) + [10]
        if let path {
            try Posix.writeFileAtomically(path, bytes, mode: 0o644)
            return path
        }
        let report = StoreObjectName.damageReport("restore-damage-\(revision)-\(Timestamp.iso8601(now).replacingOccurrences(of: ":", with: "")).json")
        try job.backend.write(report, bytes, durable: true)
        return job.backend.location(of: report)
    }
}
