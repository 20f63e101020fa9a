// BackupRun: the flow of `backy backup TAGS` (backy 2.4's, with its
// weaknesses fixed; docs/store-format.md, "Order of writes in a backup"):
// lock, clean incomplete revisions and dead sessions, check the source,
// create the revision, read, verify, make chunks durable, then write the map
// and mark the revision complete. A failed verification removes the revision
// and is an error (exit 1), so schedulers back off.
import ChunkStore
import Foundation
import Logging
import Presentation

public enum BackupRun {
    public struct Result {
        public let revision: Revision
        public let stats: ChunkWriter.Stats
    }

    /// Runs one backup of `job` with `tags`. Throws on any failure, after
    /// removing the incomplete revision.
    public static func run(job: Job, tags: Set<String>, options: DataPathOptions = DataPathOptions(),
                           sourceOptions: SourceOptions = SourceOptions(),
                           log: Logger = Logger(label: "backy"), source given: BackupSource? = nil,
                           progress: ProgressMeter? = nil) throws -> Result {
        guard !tags.isEmpty, tags.allSatisfy({ !$0.isEmpty }) else {
            throw BackyError(.usage, "no tags given (e.g. `backy backup daily`)")
        }
        for t in tags where t.contains(where: { $0 == "," || $0.isWhitespace || $0.isNewline }) {
            throw BackyError(.usage, "invalid tag '\(t)'")
        }
        let lock = job.lock(.backup)
        guard try lock.tryLock(.exclusive) else {
            throw BackyError(.locked, "another backup of \(job.path) (or a copy into it, or an expiry) is running (\(lock.path) is locked)")
        }
        defer { lock.unlock() }
        log.debug("Holding \(lock.path) (exclusive): no other backup or expiry of this job runs")

        try job.removeIncomplete()
        let cleaned = try job.backend.cleanDeadSessions()
        if cleaned.tempFiles > 0 || cleaned.sessions > 0 {
            log.info("Removed \(cleaned.tempFiles) temp files of \(cleaned.sessions) interrupted sessions")
        }
        let config = try job.sourceConfig()
        let source = try given ?? SourceFactory.make(config: config, configPath: job.sourceConfigLocation, options: sourceOptions)
        let started = Date()
        try source.ready()
        try job.store.create()

        var history = try job.history()
        // The parent is the newest usable revision: a future-dated one (a
        // wrong clock, a damaged or planted file) never is.
        if source.usesParentMap, let last = Job.usable(history, now: started).last, Upgrader.isLegacy(last) {
            // Continue backy 2.4's chain: its newest revision becomes native
            // (from the local store) so the next backup can be differential.
            log.info("Upgrading revision \(last.id) (written by backy 2.4) to continue its chain")
            try Upgrader(job: job, log: log, options: options).convert(last)
            history = try job.history()
        }
        let parent = Job.usable(history, now: started).last
        var rev = Revision(id: RevisionID.make(), timestamp: started, parent: parent?.id, tags: tags)
        try job.save(rev)
        log.info("New revision \(rev.id) [\(rev.sortedTags.joined(separator: ","))]")

        let session: StoreSession
        do {
            session = try job.backend.openSession()
        } catch {
            try? job.removeRevision(rev.id)
            throw error
        }
        defer { session.close() }
        let force = history.contains { $0.trust == .distrusted }
        if force { log.info("Noticed untrusted revisions - forcing full writes.") }
        let writer = ChunkWriter(job: job, session: session, options: options, forceRewrite: force)
        writer.progress = progress
        progress?.start("backup", total: 0)
        defer { progress?.finish() }
        log.debug("Phase: reading \(config["type"]?.string ?? "the source") with \(options.threads) threads; parent \(parent?.id ?? "none")\(force ? "; rewriting every chunk (distrusted revisions)" : "")")
        let ctx = BackupContext(job: job, revision: rev, parent: parent, writer: writer, session: session, log: log)

        do {
            let map = try source.backup(ctx)
            log.debug("Phase: verifying the new revision against the source")
            // Chunks may still be committing while the verification of the
            // other blocks runs; BackupCheck waits for them before it reads
            // back a chunk this run stored.
            do {
                try source.verify(ctx, map: map)
            } catch let e as BackyError where e.kind == .verification {
                log.error("New revision does not match source - removing it.")
                throw e
            }
            log.debug("Phase: making chunk files durable")
            try writer.makeDurable()
            log.info("Revision \(rev.id) verification OK.")
            // Never complete a revision that names a chunk file that is gone
            // (quarantined by a verify that ran beside this backup).
            let missing = map.distinctChunks.filter { !job.store.exists($0) }
            if let first = missing.first {
                throw BackyError(.corrupt, "\(missing.count) chunk(s) the new revision needs are missing from the store (first: \(first.hex)); they were quarantined or removed during the backup — the next backup rewrites them")
            }
            log.debug("Phase: writing the map and completing revision \(rev.id)")
            try job.backend.write(.map(rev.id), map.encode(), durable: true, crashPoint: .mapBeforeRename)
            CrashPoints.reached(.mapWritten)

            let s = writer.stats
            rev.stats = YAMLMap()
            rev.stats["bytes_written"] = .int(Int64(map.imageSize))
            for (k, v) in ctx.extraStats.pairs { rev.stats[k] = v }
            rev.stats["chunks"] = .int(Int64(map.chunks.count))
            rev.stats["chunks_zero"] = .int(Int64(map.chunks.filter { $0.isZero }.count))
            rev.stats["chunks_read"] = .int(Int64(s.chunksRead))
            rev.stats["chunks_written"] = .int(Int64(s.chunksWritten))
            rev.stats["chunks_reused"] = .int(Int64(s.chunksReused))
            rev.stats["bytes_read"] = .int(s.bytesRead)
            rev.stats["bytes_stored"] = .int(s.bytesStored)
            let duration = Date().timeIntervalSince(started)
            rev.stats["duration"] = .double((duration * 1e6).rounded() / 1e6)
            if let why = ctx.distrustReason {
                rev.trust = .distrusted
                rev.stats["distrust_reason"] = .string(why)
                log.warning("Marking revision \(rev.id) distrusted: \(why)")
            }
            try job.save(rev, crashPoint: .revBeforeComplete)
            CrashPoints.reached(.revComplete)
            job.updateLastLinks(rev)
            let mbps = duration > 0 ? Double(map.imageSize) / duration / 1e6 : 0
            log.info("Backup \(rev.id) complete: \(map.chunks.count) chunks, \(s.chunksWritten) written (\(ByteFormat.flexible(s.bytesStored)) stored), \(s.chunksReused) reused, \(rev.stats["chunks_zero"]!.int!) zero; \(String(format: "%.2f", duration)) s, \(String(format: "%.0f", mbps)) MB/s")
            source.finish(ctx, succeeded: true, keep: rev)
            session.close()
            verifyNewestDistrusted(job: job, options: options, log: log)
            return Result(revision: rev, stats: s)
        } catch {
            source.finish(ctx, succeeded: false, keep: parent)
            do {
                // A cluster that stopped answering: removing it would wait
                // out another timeout; the next backup removes it.
                if (job.backend as? RadosBackend)?.stalled != true { try job.removeRevision(rev.id) }
            } catch {
                log.error("Could not remove incomplete revision \(rev.id): \(error); the next backup removes it")
            }
            throw error
        }
    }

    /// As in backy 2.4: while revisions are distrusted, each backup verifies
    /// the newest distrusted one, so distrust resolves itself.
    static func verifyNewestDistrusted(job: Job, options: DataPathOptions, log: Logger) {
        guard let history = try? job.history(),
              let target = history.last(where: { $0.trust == .distrusted && $0.stats["distrust_reason"] == nil }) else { return }
        log.info("Found inconsistent revision(s). Performing single verification.")
        let lock = job.lock(.purge)
        guard (try? lock.tryLock(.exclusive)) == true else {
            log.warning("Failed to get exclusive lock for 'verify'. Skipping the verification of \(target.id).")
            return
        }
        defer { lock.unlock() }
        do {
            _ = try Verifier(job: job, log: log, threads: options.threads).verify(revision: target)
        } catch {
            log.error("Verification of \(target.id) failed: \(error)")
        }
    }
}
