// MetricsSnapshot: the Prometheus metrics of backy's jobs and scheduler at
// one moment, and their text exposition (rendered by swift-prometheus). Per
// job, labelled `job` only (never a revision id: the set of series stays
// bounded): last success time, last duration, consecutive failures,
// revisions, bytes stored and on disk, SLA state, verification, and for jobs
// with restore drills the last clean drill. Per scheduler: running and
// queued runs, worker limit, configured jobs, when the state was taken.
// The scheduler's /metrics and `backy metrics --textfile` both render this.

import ChunkStore
import Foundation
import Prometheus
import Scheduler

public struct MetricsSnapshot: Sendable {
    public struct JobFacts: Sendable {
        public var entry: JobStatusEntry
        /// The job's store; nil if it could not be measured.
        public var store: StoreUsage?

        public init(entry: JobStatusEntry, store: StoreUsage?) {
            self.entry = entry
            self.store = store
        }
    }

    public var jobs: [JobFacts]
    public var running: Int
    public var queued: Int
    public var workerLimit: Int
    /// When the job states were taken (the status file's mtime for
    /// `backy metrics`, now for the scheduler).
    public var taken: Date

    public init(jobs: [JobFacts], running: Int, queued: Int, workerLimit: Int, taken: Date) {
        self.jobs = jobs
        self.running = running
        self.queued = queued
        self.workerLimit = workerLimit
        self.taken = taken
    }

    /// Running and queued runs as the status file shows them (for `backy
    /// metrics`, without a scheduler to ask).
    public static func load(of entries: [JobStatusEntry]) -> (running: Int, queued: Int) {
        (entries.filter { $0.status.hasPrefix("running") }.count,
         entries.filter { $0.status.hasPrefix("queued") }.count)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    public func render(extra: PrometheusCollectorRegistry? = nil) -> String {
        let registry = PrometheusCollectorRegistry()
        func gauge(_ name: String, _ help: String, _ value: Double, job: String? = nil) {
            let g = job.map { registry.makeGauge(name: name, labels: [("job", $0)], help: help) }
                ?? registry.makeGauge(name: name, help: help)
            g.set(to: value)
        }
        gauge("backy_scheduler_jobs_running", "Backups, purges and drills running now.", Double(running))
        gauge("backy_scheduler_jobs_queued", "Runs waiting for a free worker.", Double(queued))
        gauge("backy_scheduler_worker_limit", "At most this many runs at once (worker-limit).", Double(workerLimit))
        gauge("backy_scheduler_jobs", "Jobs in the configuration.", Double(jobs.count))
        gauge("backy_scheduler_state_timestamp_seconds", "When the job states were taken (the status file's modification time for backy metrics).",
              taken.timeIntervalSince1970.rounded())
        for f in jobs {
            let e = f.entry
            let j = e.job
            if let t = e.lastTimeEpoch {
                gauge("backy_job_last_success_timestamp_seconds", "Time of the newest complete backup.", Double(t), job: j)
            }
            if let d = e.lastDurationSeconds {
                gauge("backy_job_last_duration_seconds", "Duration of the newest complete backup.", d, job: j)
            }
            gauge("backy_job_consecutive_failures", "Failed runs in a row (0 after a success).", Double(e.failures), job: j)
            gauge("backy_job_revisions", "Complete revisions.", Double(e.revisions), job: j)
            gauge("backy_job_sla_ok", "1 when the newest backup is within the SLA (1.5 x the shortest interval), else 0.",
                  e.sla == "OK" ? 1 : 0, job: j)
            gauge("backy_job_sla_overdue_seconds", "Seconds past the SLA.", Double(e.slaOverdue), job: j)
            gauge("backy_job_problems", "1 when the job has problems (damaged or future-dated revisions, ignored files, an unusable directory).",
                  e.problems == "-" ? 0 : 1, job: j)
            if let s = f.store {
                gauge("backy_job_stored_bytes", "Bytes in the job's chunk files.", Double(s.storedBytes), job: j)
                gauge("backy_job_disk_bytes", "Disk space of the job directory.", Double(s.diskBytes), job: j)
                gauge("backy_job_chunks", "Chunk files in the job's store.", Double(s.chunks + s.legacyChunks), job: j)
                gauge("backy_job_verified_ratio", "Share of chunks verified at rest at least once (0..1).", s.verifiedPercent / 100, job: j)
                if let t = s.newestVerified {
                    gauge("backy_job_last_verification_timestamp_seconds", "When verify last read a chunk of the job back.",
                          t.timeIntervalSince1970, job: j)
                }
                if let t = s.oldestVerified {
                    gauge("backy_job_oldest_verification_timestamp_seconds", "When the least recently verified chunk was verified.",
                          t.timeIntervalSince1970, job: j)
                }
                gauge("backy_job_quarantined_chunks", "Chunks in quarantine.", Double(s.quarantined), job: j)
            }
            if e.drill != "-" {
                let clean = e.lastDrillResult.hasPrefix("clean") ? e.lastDrillEpoch.map(Double.init) ?? 0 : 0
                gauge("backy_drill_last_success_timestamp_seconds", "Time of the last restore drill if it was clean, 0 if none was (jobs with drills).",
                      clean, job: j)
            }
        }
        var out = registry.emitToBuffer()
        if let extra { extra.emit(into: &out) }
        return String(decoding: out, as: UTF8.self)
    }
}
