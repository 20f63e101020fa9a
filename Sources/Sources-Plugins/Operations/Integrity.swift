// Integrity: the job-level operations behind `distrust`, `verify` and
// `forget`, with their locking (the metadata lock `.meta`; verify's caller
// holds `.purge`).
import ChunkStore
import Foundation
import Logging

public enum Integrity {
    /// Distrusts one revision, or every complete one within [from, until]
    /// (days, UTC, inclusive). Returns the ids changed.
    @discardableResult
    public static func distrust(job: Job, spec: String?, from: Date?, until: Date?, log: Logger) throws -> [String] {
        let revs = try job.scan()
        var targets: [Revision]
        if let spec {
            targets = [try Job.find(spec, in: revs)]
        } else {
            targets = revs.filter { $0.isComplete }
            if let from { targets = targets.filter { $0.timestamp >= from } }
            if let until { targets = targets.filter { $0.timestamp < until.addingTimeInterval(86400) } }
        }
        let ids = targets.map(\.id)
        try job.updateRevisions(Set(ids)) { rev in
            log.info("Distrusting revision \(rev.id)")
            rev.trust = .distrusted
        }
        return ids
    }

    /// `verify`: one revision, every distrusted one, or a sample. Returns
    /// the bad chunks found. The caller holds `.purge` exclusively.
    public static func verify(job: Job, spec: String?, sample: Double?, budget: Double?, options: DataPathOptions = DataPathOptions(),
                              log: Logger, progress: ProgressMeter? = nil) throws -> [Verifier.BadChunk] {
        let verifier = Verifier(job: job, log: log, threads: options.threads)
        verifier.progress = progress
        if let sample {
            return try verifier.sample(percent: sample, budget: budget).bad
        }
        var targets: [Revision]
        if let spec {
            targets = [try job.findComplete(spec)]
        } else {
            targets = try job.history().filter { $0.trust == .distrusted }
            if targets.isEmpty { log.info("No distrusted revisions to verify.") }
        }
        var bad: [Verifier.BadChunk] = []
        for rev in targets {
            bad += try verifier.verify(revision: rev).bad
        }
        return bad
    }

    /// `forget --dry-run`: the revision `spec` names and what removing it
    /// would free (its files now, the chunks only it uses at the next purge).
    public static func forgetPreview(job: Job, spec: String) throws -> (revision: Revision, frees: RemovalPreview) {
        let rev = try job.find(spec)
        return (rev, try RemovalPreview.compute(job: job, removing: [rev.id]))
    }

    /// Removes one revision. Refuses the incomplete revision of a running
    /// backup. The caller reports the result.
    public static func forget(job: Job, spec: String, log: Logger) throws -> Revision {
        try job.withMetadataLock {
            let rev = try job.find(spec)
            if !rev.isComplete {
                let backup = job.lock(.backup)
                guard try backup.tryLock(.exclusive) else {
                    throw BackyError(.locked, "revision \(rev.id) belongs to a running backup")
                }
                backup.unlock()
            }
            log.debug("Removing revision \(rev.id) under the metadata lock")
            try job.removeRevision(rev.id)
            return rev
        }
    }

    /// Runs `body` holding `.purge` exclusively (backy 2.4's lock of purge
    /// and verify); nil, without running it, if another process holds it.
    public static func exclusively<T>(_ job: Job, _ body: () throws -> T) throws -> T? {
        let lock = job.lock(.purge)
        guard try lock.tryLock(.exclusive) else {
            job.log.debug("\(lock.path) is held by another purge or verify")
            return nil
        }
        job.log.debug("Holding \(lock.path) (exclusive)")
        defer { lock.unlock() }
        return try body()
    }

    /// `upgrade`: converts backy 2.x revisions, holding `.backup` (fails if
    /// a backup runs). `say` gets backy 2.4's progress lines.
    public static func upgrade(job: Job, options: DataPathOptions = DataPathOptions(), log: Logger,
                               progress: ProgressMeter? = nil, say: @escaping (String) -> Void) throws {
        let lock = job.lock(.backup)
        guard try lock.tryLock(.exclusive) else {
            throw BackyError(.locked, "a backup of \(job.path) is running (\(lock.path) is locked); try again later")
        }
        defer { lock.unlock() }
        let up = Upgrader(job: job, log: log, options: options)
        up.say = say
        up.progress = progress
        try up.run()
    }
}
