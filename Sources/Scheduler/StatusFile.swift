// StatusFile.swift — the daemon's status file (README.md,
// "Monitoring with `backy check`"). The file is a
// YAML list with one flow mapping per job carrying 2.4's keys (job, sla,
// status, last_time, last_tags, last_duration, next_time, next_tags) plus
// `sla_overdue` (seconds past the SLA, as 2.5 adds), `failures` (consecutive
// failed runs), numbers beside the texts for scripts and metrics
// (`last_time_epoch`, `next_time_epoch`, `last_duration_seconds`, `revisions`;
// `last_drill_epoch` with drills), `last_error` (the last error line of a
// failed run, while the job fails), for a job whose files are broken
// `problems` (what is wrong: damaged or future-dated revisions, ignored
// files, a job directory that cannot be prepared), and for jobs with restore
// drills `drill`, `last_drill` and `last_drill_result`; it is rewritten
// atomically (temp file + rename, mode 0644). `backy check` (Check.swift)
// reads it.

import ChunkStore
import Foundation
import Presentation
#if canImport(Glibc)
import Glibc
#endif

/// One job's line in the status file and the console's `jobs` table.
public struct JobStatusEntry: Equatable, Sendable {
    public var job: String
    public var sla: String
    public var status: String
    public var lastTime: String
    public var lastTags: String
    public var lastDuration: String
    public var nextTime: String
    public var nextTags: String
    public var slaOverdue: Int
    public var failures: Int
    /// What is wrong with the job's files ("; "-separated), or "-".
    public var problems: String
    /// Restore drills (only for jobs with `drill` configured, else "-"): the
    /// state (DrillSchedule.state), the last drill's time and result.
    public var drill = "-"
    public var lastDrill = "-"
    public var lastDrillResult = "-"
    /// The last error line of the job's last failed run (while it fails), or "-".
    public var lastError = "-"
    /// Complete revisions (not future-dated).
    public var revisions = 0
    /// The exact duration of the last backup, in seconds.
    public var lastDurationSeconds: Double?
    /// A RADOS job: the node that runs it now or ran it last, or "-".
    public var node = "-"

    /// `last_time` as seconds since the epoch.
    public var lastTimeEpoch: Int? { StatusFile.parseTime(lastTime).map { Int($0.timeIntervalSince1970) } }
    public var nextTimeEpoch: Int? { StatusFile.parseTime(nextTime).map { Int($0.timeIntervalSince1970) } }
    public var lastDrillEpoch: Int? { StatusFile.parseTime(lastDrill).map { Int($0.timeIntervalSince1970) } }

    public init(job: String, sla: String, status: String, lastTime: String = "-", lastTags: String = "-",
                lastDuration: String = "-", nextTime: String = "-", nextTags: String = "-",
                slaOverdue: Int = 0, failures: Int = 0, problems: String = "-") {
        self.job = job
        self.sla = sla
        self.status = status
        self.lastTime = lastTime
        self.lastTags = lastTags
        self.lastDuration = lastDuration
        self.nextTime = nextTime
        self.nextTags = nextTags
        self.slaOverdue = slaOverdue
        self.failures = failures
        self.problems = problems
    }

    /// When a job was set up: its `config` was written (by the scheduler
    /// when it first prepared the job or when the job's source changed, or
    /// by `backy init`); nil if there is none.
    public static func since(jobPath: String) -> Date? {
        guard let st = Posix.status(jobPath + "/config") else { return nil }
        return Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec))
    }

    /// Builds the entry from the job's schedule, history and scheduler state.
    /// `since`: when the job was set up (its `config` written); a job that
    /// has no backup longer than its SLA allows after that is not within
    /// its SLA.
    public static func make(job: String, schedule: Schedule, history: JobHistory, status: String,
                            nextTime: Date?, nextTags: Set<String>, failures: Int, now: Date,
                            problems extra: [String] = [], since: Date? = nil, lastError: String? = nil) -> JobStatusEntry {
        var sla = schedule.sla(now: now, history: history.revisions)
        let limit = 1.5 * Double(schedule.minInterval)
        let problems = extra + history.allProblems(now: now)
        var e = JobStatusEntry(job: job, sla: sla.rawValue, status: status, failures: failures,
                               problems: problems.isEmpty ? "-" : problems.joined(separator: "; "))
        e.lastError = lastError.map { $0.isEmpty ? "-" : $0 } ?? "-"
        e.revisions = history.backups.filter { $0.timestamp.timeIntervalSince(now) <= Job.futureTolerance }.count
        if let last = history.lastBackup(now: now) {
            e.lastTime = StatusFile.formatTime(last.timestamp)
            e.lastTags = last.tags.isEmpty ? "-" : schedule.sortedTags(last.tags).joined(separator: ",")
            e.lastDuration = last.duration.map { DurationFormat.seconds($0) } ?? "-"
            e.lastDurationSeconds = last.duration
            let age = now.timeIntervalSince(last.timestamp)
            if sla == .tooOld { e.slaOverdue = max(0, Int((age - limit).rounded(.down))) }
        } else if sla == .ok, let since, since <= now, now.timeIntervalSince(since) > limit {
            // Never succeeded within its SLA (backy 2.4 called such a job OK forever).
            sla = .tooOld
            e.sla = sla.rawValue
            e.slaOverdue = max(0, Int((now.timeIntervalSince(since) - limit).rounded(.down)))
        }
        if let t = nextTime {
            e.nextTime = StatusFile.formatTime(t)
            e.nextTags = nextTags.isEmpty ? "-" : schedule.sortedTags(nextTags).joined(separator: ",")
        }
        return e
    }
}

public enum StatusFile {
    /// "YYYY-MM-DD HH:MM:SS UTC".
    public static func formatTime(_ date: Date) -> String {
        Timestamp.formatSeconds(date) + " UTC"
    }

    /// Parses "YYYY-MM-DD HH:MM:SS UTC" (or without " UTC").
    public static func parseTime(_ text: String) -> Date? {
        var s = text.trimmingCharacters(in: .whitespaces)
        if s.hasSuffix(" UTC") { s.removeLast(4) }
        guard s.count >= 19 else { return nil }
        return Timestamp.parse(s)
    }

    /// The file's text: a YAML list of flow mappings, keys sorted.
    public static func render(_ entries: [JobStatusEntry]) -> String {
        if entries.isEmpty { return "[]\n" }
        var out = ""
        for e in entries {
            var m = YAMLMap([
                ("job", .string(e.job)), ("sla", .string(e.sla)), ("status", .string(e.status)),
                ("last_time", .string(e.lastTime)), ("last_tags", .string(e.lastTags)),
                ("last_duration", .string(e.lastDuration)), ("next_time", .string(e.nextTime)),
                ("next_tags", .string(e.nextTags)), ("sla_overdue", .int(Int64(e.slaOverdue))),
                ("failures", .int(Int64(e.failures))),
            ])
            // Numbers beside the texts (seconds, epoch), for scripts and metrics.
            if let t = e.lastTimeEpoch { m["last_time_epoch"] = .int(Int64(t)) }
            if let d = e.lastDurationSeconds, d.isFinite { m["last_duration_seconds"] = .double((d * 1000).rounded() / 1000) }
            if let t = e.nextTimeEpoch { m["next_time_epoch"] = .int(Int64(t)) }
            m["revisions"] = .int(Int64(e.revisions))
            var mm = m
            if e.problems != "-" { mm["problems"] = .string(e.problems) }
            if e.lastError != "-" { mm["last_error"] = .string(e.lastError) }
            if e.node != "-" { mm["node"] = .string(e.node) }
            if e.drill != "-" {
                mm["drill"] = .string(e.drill)
                mm["last_drill"] = .string(e.lastDrill)
                mm["last_drill_result"] = .string(e.lastDrillResult)
                if let t = e.lastDrillEpoch { mm["last_drill_epoch"] = .int(Int64(t)) }
            }
            out += "- " + YAML.flow(.map(mm)) + "\n"
        }
        return out
    }

    /// One entry as a JSON object (console `jobs --json`, metrics): the
    /// file's keys, "-" as null, and the numbers.
    public static func jsonObject(_ e: JobStatusEntry) -> [String: Any] {
        func text(_ s: String) -> Any { s == "-" ? NSNull() : s }
        func num(_ n: Int?) -> Any { n.map { $0 as Any } ?? NSNull() }
        var o: [String: Any] = [
            "job": e.job, "sla": e.sla, "status": e.status, "last_time": text(e.lastTime), "last_tags": text(e.lastTags),
            "last_duration": text(e.lastDuration), "next_time": text(e.nextTime), "next_tags": text(e.nextTags),
            "sla_overdue": e.slaOverdue, "failures": e.failures, "problems": text(e.problems), "last_error": text(e.lastError),
            "revisions": e.revisions, "last_time_epoch": num(e.lastTimeEpoch), "next_time_epoch": num(e.nextTimeEpoch),
            "last_duration_seconds": e.lastDurationSeconds.map { $0 as Any } ?? NSNull(),
        ]
        if e.node != "-" { o["node"] = e.node }
        if e.drill != "-" {
            o["drill"] = e.drill
            o["last_drill"] = text(e.lastDrill)
            o["last_drill_result"] = text(e.lastDrillResult)
            o["last_drill_epoch"] = num(e.lastDrillEpoch)
        }
        return o
    }

    /// Writes the file atomically (temp + rename, mode 0644, no fsync).
    public static func write(path: String, entries: [JobStatusEntry]) throws {
        try Posix.writeFileAtomically(path, Array(render(entries).utf8), mode: 0o644, durable: false)
    }

    /// Reads the entries back (also files written by backy 2.4, whose values may be
    /// native YAML types).
    public static func parse(_ text: String, source: String) throws -> [JobStatusEntry] {
        let v = try YAML.parse(text, source: source)
        if v.isNull { return [] }
        guard let list = v.list else { throw BackyError(.corrupt, "\(source): expected a YAML list of jobs") }
        var out: [JobStatusEntry] = []
        for item in list {
            guard let m = item.map, let job = m["job"]?.string else {
                throw BackyError(.corrupt, "\(source): every entry needs a job name")
            }
            func str(_ k: String) -> String { m[k]?.string ?? "-" }
            var e = JobStatusEntry(job: job, sla: str("sla"), status: m["status"]?.string ?? "",
                                   lastTime: str("last_time"), lastTags: str("last_tags"),
                                   lastDuration: str("last_duration"), nextTime: str("next_time"),
                                   nextTags: str("next_tags"), slaOverdue: Int(clamping: m["sla_overdue"]?.int ?? 0),
                                   failures: Int(clamping: m["failures"]?.int ?? 0), problems: str("problems"))
            (e.drill, e.lastDrill, e.lastDrillResult) = (str("drill"), str("last_drill"), str("last_drill_result"))
            e.lastError = str("last_error")
            e.node = str("node")
            e.revisions = Int(clamping: m["revisions"]?.int ?? 0)
            e.lastDurationSeconds = m["last_duration_seconds"]?.double ?? m["last_duration_seconds"]?.int.map(Double.init)
            out.append(e)
        }
        return out
    }
}
