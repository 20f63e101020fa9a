// Expiry.swift — applies the schedule's expiry (backy 2.4's `Schedule.expire`; README.md, "Schedules, retries, retention")
// to a job directory: revisions lose the schedule tags they no longer need (their
// `.rev` is rewritten) and revisions left without tags are removed. `preview`
// (`backy expire --dry-run`) says the same without changing anything. Unlike 2.4.3
// this takes the job's `.backup` lock, without waiting: while a
// backup runs, expiry is skipped and happens after the next run.

import ChunkStore
import Foundation
import Logging

public enum Expiry {
    /// What one expiry run did.
    public struct Outcome: Equatable, Sendable {
        /// Revision id → the tags it lost (removed revisions included).
        public var lostTags: [String: Set<String>] = [:]
        /// Ids of the removed revisions, oldest first.
        public var removed: [String] = []
    }

    /// What expiry would do now, and what removing the revisions would
    /// free; changes nothing (no lock is taken, none is created).
    public static func preview(jobPath: String, schedule: Schedule, now: Date = Date(),
                               log: Logger = Logger(label: "backy")) throws -> (outcome: Outcome, revisions: [Revision], frees: RemovalPreview) {
        let job = try Job(path: jobPath, logger: log)
        let revisions = try job.scan()
        let history = revisions.map {
            ScheduleRevision(id: $0.id, timestamp: $0.timestamp, tags: $0.tags, complete: $0.isComplete)
        }
        let result = schedule.expire(now: now, history: history)
        let outcome = Outcome(lostTags: result.lostTags, removed: result.removed)
        return (outcome, revisions, try RemovalPreview.compute(job: job, removing: Set(result.removed)))
    }

    /// Expires the revisions of the job at `jobPath`. Returns nil (and logs why) when
    /// a backup holds the job's `.backup` lock.
    @discardableResult
    public static func run(jobPath: String, jobName: String, schedule: Schedule, now: Date = Date(),
                           log: Logger = Logger(label: "backy")) throws -> Outcome? {
        let job = try Job(path: jobPath, logger: log)
        let lock = job.lock(.backup)
        guard try lock.tryLock(.exclusive) else {
            log.info("\(jobName): not expiring now: a backup is running (\(lock.path) is locked)")
            return nil
        }
        defer { lock.unlock() }
        let revisions = try job.scan()
        let byID = Dictionary(revisions.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let history = revisions.map {
            ScheduleRevision(id: $0.id, timestamp: $0.timestamp, tags: $0.tags, complete: $0.isComplete)
        }
        let result = schedule.expire(now: now, history: history)
        var outcome = Outcome(lostTags: result.lostTags, removed: [])
        let removed = Set(result.removed)
        for id in result.lostTags.keys.sorted() where !removed.contains(id) {
            guard var rev = byID[id] else { continue }
            rev.tags = result.remainingTags[id] ?? rev.tags
            try job.save(rev, durable: false)
            log.info("\(jobName): revision \(id) loses tags [\(schedule.sortedTags(result.lostTags[id]!).joined(separator: ","))]")
        }
        for id in result.removed {
            guard let rev = byID[id] else { continue }
            let lost = result.lostTags[id] ?? []
            log.info("\(jobName): Removing revision \(id) from \(Timestamp.formatSeconds(rev.timestamp)) [\(schedule.sortedTags(lost).joined(separator: ","))]")
            try job.removeRevision(id)
            outcome.removed.append(id)
        }
        // Point `last` at the newest complete revision again if it was removed.
        if !outcome.removed.isEmpty, let newest = Job.usable(try job.scan(), now: now).last {
            job.updateLastLinks(newest)
        }
        return outcome
    }
}
