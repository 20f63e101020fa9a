// RestoreRun: `backy restore`: find the revision, pin its map for purge,
// and stream it to the target.
import ChunkStore
import Foundation
import Logging

public enum RestoreRun {
    @discardableResult
    public static func run(job: Job, spec: String, target: Restorer.Target, bestEffort: Bool = false,
                           threads: Int = Parallel.defaultThreads, log: Logger) throws -> [RestoreDamage] {
        let rev = try job.findComplete(spec)
        let session = try PinSession(jobPath: job.path)
        defer { session.close() }
        let gate = Gate(jobPath: job.path)
        if rev.backend == .native {
            try gate.shared { try session.pinMap(revision: rev.id, mapPath: job.mapPath(rev.id)) }
        }
        let image = try job.openImage(rev)
        log.info("Restoring revision \(rev.id) @ \(Timestamp.format(rev.timestamp)) [\(rev.sortedTags.joined(separator: ","))]")
        let started = Date()
        let restorer = Restorer(image: image, threads: threads, bestEffort: bestEffort, log: log)
        let damage = try restorer.run(to: target)
        let secs = Date().timeIntervalSince(started)
        log.info("Restored \(ByteFormat.flexible(Int64(image.imageSize))) in \(String(format: "%.2f", secs)) s")
        return damage
    }
}
