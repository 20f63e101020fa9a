// JobHistory.swift — what the scheduler knows of a job's revisions: all of them as
// `ScheduleRevision`s (for Schedule.next) and the newest complete one (for the
// status file, the SLA and the console). Scans are cached per job directory and
// redone only when the directory's mtime changes (every revision write, rename or
// removal changes it), so the status writer and `jobs` stay cheap with 1,000 jobs.
// A history also carries the job's problems (ignored revision files, damaged
// revisions, a directory that cannot be read) and its last restore drill;
// future-dated revisions are told apart at the time of asking.

import ChunkStore
import Foundation
import Logging
import Mount
#if canImport(Glibc)
import Glibc
#endif

/// The newest complete revision of a job.
public struct LastBackup: Equatable, Sendable {
    public var id: String
    public var timestamp: Date
    public var tags: Set<String>
    public var duration: Double?
}

/// A job's revisions as the scheduler needs them.
public struct JobHistory: Sendable {
    /// Every revision (complete or not), oldest first.
    public var revisions: [ScheduleRevision]
    /// The newest complete revision, if any (future-dated or not; see
    /// `lastBackup(now:)`).
    public var last: LastBackup?
    /// Every complete revision, oldest first.
    public var backups: [LastBackup]
    /// What is wrong with the job's files, one line each: revision files
    /// that are ignored, damaged revisions, a directory that cannot be read.
    public var problems: [String]
    /// The job's last restore drill (its drill.json), if any.
    public var lastDrill: DrillResult?

    public init(revisions: [ScheduleRevision] = [], last: LastBackup? = nil, problems: [String] = []) {
        self.revisions = revisions
        self.last = last
        self.backups = last.map { [$0] } ?? []
        self.problems = problems
    }

    /// The newest complete revision that is not future-dated at `now`.
    public func lastBackup(now: Date) -> LastBackup? {
        backups.last { $0.timestamp.timeIntervalSince(now) <= Job.futureTolerance }
    }

    /// Complete revisions dated after `now` + `Job.futureTolerance`.
    public func futureDated(now: Date) -> [LastBackup] {
        backups.filter { $0.timestamp.timeIntervalSince(now) > Job.futureTolerance }
    }

    /// `problems` and the future-dated revisions at `now`.
    public func allProblems(now: Date) -> [String] {
        var out = problems
        let future = futureDated(now: now)
        if let f = future.last {
            out.append("\(future.count) revision(s) dated in the future, e.g. \(f.id) at \(Timestamp.formatSeconds(f.timestamp)) UTC (ignored for the SLA and the schedule)")
        }
        return out
    }

    /// Reads the job directory (no cache). A directory without `config`
    /// gives an empty history; one that cannot be read, a history with the
    /// reason in `problems`.
    public static func scan(jobPath: String, log: Logger) -> JobHistory {
        guard Posix.exists(jobPath + "/config") else {
            if errno == ENOENT { return JobHistory() }
            return JobHistory(problems: ["cannot read \(jobPath)/config: \(String(cString: strerror(errno)))"])
        }
        let job: Job
        let report: Job.ScanResult
        do {
            job = try Job(path: jobPath, logger: log)
            report = try job.scanReport()
        } catch {
            return JobHistory(problems: ["cannot read the job directory: \(error)"])
        }
        let revs = report.revisions
        var h = JobHistory()
        h.revisions = revs.map { ScheduleRevision(id: $0.id, timestamp: $0.timestamp, tags: $0.tags, complete: $0.isComplete) }
        h.backups = revs.filter(\.isComplete).map {
            LastBackup(id: $0.id, timestamp: $0.timestamp, tags: $0.tags, duration: $0.duration)
        }
        h.last = h.backups.last
        h.lastDrill = Drill.last(job: job)
        if let line = report.ignoredSummary { h.problems.append(line) }
        var damaged: [String] = []
        for r in revs { if let why = job.damage(of: r) { damaged.append("\(r.id) (\(why))") } }
        if let first = damaged.first {
            h.problems.append("\(damaged.count) damaged revision(s): \(first)\(damaged.count > 1 ? " and \(damaged.count - 1) more" : "")")
        }
        return h
    }
}

/// Caches `JobHistory` per job directory, keyed by the directory's mtime.
// @unchecked Sendable: the cache dictionary is read and changed only under `lock`.
public final class HistoryCache: @unchecked Sendable {
    private struct Entry {
        var mtime: timespec
        var trustworthy: Bool
        var history: JobHistory
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private let log: Logger

    public init(log: Logger = Logger(label: "backy")) {
        self.log = log
    }

    /// The history of the job at `jobPath`, rescanned if the directory changed.
    public func history(jobPath: String) -> JobHistory {
        var st = stat()
        guard stat(jobPath, &st) == 0 else {
            // A job without a directory yet has no history; one whose
            // directory cannot be read is a problem, not a fresh job.
            let e = errno
            if e == ENOENT { return JobHistory() }
            return JobHistory(problems: ["cannot read the job directory \(jobPath): \(String(cString: strerror(e)))"])
        }
        let mtime = st.st_mtim
        lock.lock()
        if let e = entries[jobPath], e.trustworthy, e.mtime.tv_sec == mtime.tv_sec, e.mtime.tv_nsec == mtime.tv_nsec {
            lock.unlock()
            return e.history
        }
        lock.unlock()
        // File system timestamps are coarse (a few ms): a change right after the scan
        // may keep the same mtime. Only trust an mtime that is clearly older than the scan.
        let scanStart = Date().timeIntervalSince1970
        let h = JobHistory.scan(jobPath: jobPath, log: log)
        let m = Double(mtime.tv_sec) + Double(mtime.tv_nsec) / 1e9
        lock.lock()
        entries[jobPath] = Entry(mtime: mtime, trustworthy: m < scanStart - 1.0, history: h)
        lock.unlock()
        return h
    }

    /// Forgets a job (after a run, or when it leaves the configuration).
    public func invalidate(jobPath: String) {
        lock.lock()
        entries[jobPath] = nil
        lock.unlock()
    }
}
