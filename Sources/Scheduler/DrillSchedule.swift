// DrillSchedule.swift — scheduled restore drills (`drill: 7d` per job, or as the
// global default; docs/mount.md). The math: a job's drills fall on a grid of the
// drill interval shifted by the job's spread (so jobs drill at different times of
// day, like their backups); the next drill is the first grid point at least half
// an interval after the last one, or now if that point has passed. The daemon
// runs `backy -b JOB -l JOB/backy.log drill` within the worker limit, never while
// the job's backup runs, and after due backups. The status: the last drill from
// the job's drill.json, judged for the status file, `check` and the console.

import ChunkStore
import Foundation
import Mount

public enum DrillSchedule {
    /// When a job's next drill is due.
    public static func next(jobName: String, interval: Int, last: Date?, now: Date) -> Date {
        let offset = spread(jobName: jobName, maxInterval: interval)
        guard let last else { return nextInInterval(now: now, interval: interval, spread: offset) }
        let earliest = last.addingTimeInterval(Double(interval) / 2)
        let t = nextInInterval(now: earliest.addingTimeInterval(-1), interval: interval, spread: offset)
        return t < now ? now : t
    }

    /// The status file's drill state of a job: "-" (no drills configured),
    /// "OK" (the last drill was clean and is recent, or there was none yet),
    /// "FAILED" (the last drill found a damaged filesystem: CRITICAL),
    /// "ERROR" (it could not run: WARNING), "TOO OLD" (older than twice the
    /// interval: WARNING).
    public static func state(interval: Int?, last: DrillResult?, now: Date) -> (state: String, time: String, result: String) {
        guard let interval else { return ("-", "-", "-") }
        guard let last, let date = last.date else { return ("OK", "-", "-") }
        var result = last.verdict
        if !last.failedNames.isEmpty { result += ": " + last.failedNames.joined(separator: ",") }
        let time = StatusFile.formatTime(date)
        switch last.verdict {
        case "failed": return ("FAILED", time, result)
        case "clean":
            return now.timeIntervalSince(date) > 2 * Double(interval) ? ("TOO OLD", time, result) : ("OK", time, result)
        default: return ("ERROR", time, result)
        }
    }

    /// The `drill` key of a job or of `global`: a duration (7d, 12h, seconds),
    /// or `off`/`0`/`never` for none.
    static func parseInterval(_ v: YAMLValue, key: String, map: YAMLMap, prefix: String, problems p: Problems) throws -> Int? {
        if case .int(let n) = v {
            guard n >= 0, n <= 366 * 86400 else { throw p.error(map, key, "expected a duration such as 7d or 12h, or off, found \(n)", prefix: prefix) }
            return n == 0 ? nil : Int(n)
        }
        guard let s = v.string, v.map == nil else {
            throw p.error(map, key, "expected a duration such as 7d or 12h, or off, found \(SchedulerConfig.show(v))", prefix: prefix)
        }
        if ["off", "never", "no", "false", "0"].contains(s.lowercased()) { return nil }
        do {
            let n = try parseDuration(s)
            guard n >= 1 else { throw p.error(map, key, "the drill interval must be positive", prefix: prefix) }
            return n
        } catch let e as DurationError {
            throw p.error(map, key, e.description, prefix: prefix)
        }
    }
}

extension DrillSchedule {
    /// Sets an entry's drill fields from the job's last drill; a queued or
    /// running drill shows in its status.
    static func fill(_ e: inout JobStatusEntry, interval: Int?, last: DrillResult?, running: Bool, now: Date) {
        guard let interval else { return }
        (e.drill, e.lastDrill, e.lastDrillResult) = state(interval: interval, last: last, now: now)
        if running {
            if e.status == JobStatusText.running { e.status = "running restore drill" }
            if e.status == JobStatusText.queued { e.status = "queued for restore drill" }
        }
    }
}

extension SchedulerDaemon {
    /// Sets a job's next drill time from its configuration and last drill
    /// (in `history`: a RADOS job's, whichever node ran it; under the
    /// daemon's lock).
    func planDrill(_ j: JobState, history: JobHistory, now: Date) {
        guard let interval = j.def.drillInterval else {
            j.drillNext = nil
            return
        }
        let recorded = history.lastDrill?.date
        let last = [recorded, j.drillAttempt].compactMap { $0 }.max()
        j.drillNext = DrillSchedule.next(jobName: j.def.name, interval: interval, last: last, now: now)
    }
}

extension Check {
    /// Jobs whose last drill failed (CRITICAL) and those whose last drill is
    /// too old or could not run (WARNING), with one line each.
    static func drillProblems(_ entries: [JobStatusEntry]) -> (critical: [String], warning: [String], configured: Bool) {
        var critical: [String] = []
        var warning: [String] = []
        for e in entries {
            switch e.drill {
            case "FAILED": critical.append("\(e.job) (last drill: \(e.lastDrill), \(e.lastDrillResult))")
            case "TOO OLD": warning.append("\(e.job) (last drill: \(e.lastDrill), too old)")
            case "ERROR": warning.append("\(e.job) (last drill: \(e.lastDrill), \(e.lastDrillResult): could not run)")
            default: break
            }
        }
        return (critical, warning, entries.contains { $0.drill != "-" })
    }
}
