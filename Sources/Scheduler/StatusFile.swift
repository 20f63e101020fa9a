// StatusFile.swift — the daemon's status file (reference §7.7) and `backy check`
// (§10). The file is a YAML list with one flow mapping per job carrying 2.4's keys
// (job, sla, status, last_time, last_tags, last_duration, next_time, next_tags) plus
// `sla_overdue` (seconds past the SLA, as 2.5 adds), `failures` (consecutive
// failed runs), for a job whose files are broken `problems` (what is wrong:
// damaged or future-dated revisions, ignored files, a job directory that
// cannot be prepared), and for jobs with restore drills `drill`, `last_drill`
// and `last_drill_result`; it is rewritten atomically (temp file + rename,
// mode 0644). `check` reads it and prints Nagios lines with perfdata after
// " | "; a job with problems is CRITICAL.

import ChunkStore
import Foundation
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

    /// Builds the entry from the job's schedule, history and scheduler state.
    public static func make(job: String, schedule: Schedule, history: JobHistory, status: String,
                            nextTime: Date?, nextTags: Set<String>, failures: Int, now: Date,
                            problems extra: [String] = []) -> JobStatusEntry {
        let sla = schedule.sla(now: now, history: history.revisions)
        let problems = extra + history.allProblems(now: now)
        var e = JobStatusEntry(job: job, sla: sla.rawValue, status: status, failures: failures,
                               problems: problems.isEmpty ? "-" : problems.joined(separator: "; "))
        if let last = history.lastBackup(now: now) {
            e.lastTime = StatusFile.formatTime(last.timestamp)
            e.lastTags = last.tags.isEmpty ? "-" : schedule.sortedTags(last.tags).joined(separator: ",")
            e.lastDuration = last.duration.map { StatusReport.formatDuration($0) } ?? "-"
            let age = now.timeIntervalSince(last.timestamp)
            let limit = 1.5 * Double(schedule.minInterval)
            if sla == .tooOld { e.slaOverdue = max(0, Int((age - limit).rounded(.down))) }
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
            var mm = m
            if e.problems != "-" { mm["problems"] = .string(e.problems) }
            if e.drill != "-" {
                mm["drill"] = .string(e.drill)
                mm["last_drill"] = .string(e.lastDrill)
                mm["last_drill_result"] = .string(e.lastDrillResult)
            }
            out += "- " + YAML.flow(.map(mm)) + "\n"
        }
        return out
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
            out.append(e)
        }
        return out
    }
}

/// `backy check`: Nagios-style SLA check of the status file (reference §10).
public enum Check {
    public struct Result: Equatable, Sendable {
        /// 0 OK, 1 WARNING (restore drills), 2 CRITICAL, 3 UNKNOWN.
        public var code: Int32
        /// The lines to print (each ends with a newline).
        public var output: String
    }

    /// How old the status file may be before the check is CRITICAL.
    public static let maxStatusAge: TimeInterval = 5 * 60

    public static func run(statusFile path: String, now: Date = Date()) -> Result {
        guard let st = Posix.status(path) else {
            if errno != ENOENT {
                return Result(code: 3, output: "UNKNOWN: Cannot read status file \(path): \(String(cString: strerror(errno)))\n")
            }
            return Result(code: 3, output: "UNKNOWN: No status file found at \(path)\n")
        }
        let mtime = Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
        if now.timeIntervalSince(mtime) > maxStatusAge {
            return Result(code: 2, output: "CRITICAL: Status file is older than 5 minutes\n")
        }
        let entries: [JobStatusEntry]
        do {
            let bytes = try Posix.readFile(path, limit: Posix.Limit.configuration)
            entries = try StatusFile.parse(String(decoding: bytes, as: UTF8.self), source: path)
        } catch {
            return Result(code: 3, output: "UNKNOWN: Cannot read status file \(path): \(error)\n")
        }
        let failed = entries.filter { $0.sla != "OK" }
        let broken = entries.filter { $0.problems != "-" && !$0.problems.isEmpty }
        let oldest = entries.compactMap { StatusFile.parseTime($0.lastTime) }.map { now.timeIntervalSince($0) }.max() ?? 0
        let age = oldest.isFinite ? Int(clamping: Int64(max(0, min(oldest, 9e18)).rounded(.down))) : 0
        var perf = "jobs=\(entries.count);;;0 jobs_out_of_sla=\(failed.count);;;0 oldest_last_backup_age=\(age)s;;;0"
        let drills = drillProblems(entries)
        if drills.configured { perf += " drills_failed=\(drills.critical.count);;;0 drills_late=\(drills.warning.count);;;0" }
        if !failed.isEmpty || !broken.isEmpty || !drills.critical.isEmpty {
            var what: [String] = []
            if !failed.isEmpty { what.append("\(failed.count) jobs not within SLA") }
            if !broken.isEmpty { what.append("\(broken.count) jobs with problems") }
            if !drills.critical.isEmpty { what.append("\(drills.critical.count) jobs failed their last restore drill") }
            var out = "CRITICAL: \(what.joined(separator: ", ")) | \(perf)\n"
            for e in failed { out += "\(e.job) (last time: \(e.lastTime))\n" }
            for e in broken { out += "\(e.job) (problems: \(e.problems))\n" }
            for l in drills.critical + drills.warning { out += l + "\n" }
            return Result(code: 2, output: out)
        }
        if !drills.warning.isEmpty {
            var out = "WARNING: \(drills.warning.count) jobs without a recent clean restore drill | \(perf)\n"
            for l in drills.warning { out += l + "\n" }
            return Result(code: 1, output: out)
        }
        return Result(code: 0, output: "OK: \(entries.count) jobs within SLA | \(perf)\n")
    }
}
