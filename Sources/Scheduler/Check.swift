// Check.swift — `backy check`, the Nagios/Icinga plugin (README.md, "Monitoring with `backy check`"): reads
// the status file (and the configuration, for the jobs that must be in it)
// and prints one status line with perfdata after " | ", then one line per
// job at fault. Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
//
// CRITICAL: the status file is older than 5 minutes or dated in the future
// (the scheduler is not running, hangs, or a clock is wrong); a job out of its
// SLA (also one that never succeeded within it); a job with problems; a job
// whose last restore drill failed; a job that failed `failures-critical` runs
// in a row; a configured job missing from the status file.
// WARNING: a job that failed `failures-warning` runs in a row; a late or
// unrunnable restore drill; a configuration the scheduler would refuse; a
// node sharing RADOS jobs silent for 3 leases, or heartbeats that cannot be
// read (NodeHeartbeats.swift).
// UNKNOWN: no or an unreadable configuration or status file, or an empty one
// while jobs are configured.

import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum Check {
    public struct Result: Equatable, Sendable {
        /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
        public var code: Int32
        /// The lines to print (each ends with a newline).
        public var output: String
    }

    /// How old the status file may be before the check is CRITICAL.
    public static let maxStatusAge: TimeInterval = 5 * 60
    /// How far in the future the status file's mtime may be (clock skew).
    public static let maxFutureSkew: TimeInterval = 60

    /// What the configuration says the status file must show.
    public struct Expectations: Sendable {
        /// The configured jobs (nil: not known, do not check).
        public var jobs: [String]?
        public var failuresWarning = 3
        public var failuresCritical = 6
        /// The configuration's first error, if the scheduler would refuse it.
        public var configError: String?
        /// Nodes sharing RADOS jobs that have gone silent, and why the
        /// heartbeats could not be read (NodeHeartbeats.swift).
        public var silentNodes: [String] = []
        public var heartbeatError: String?

        public init(jobs: [String]? = nil, monitoring: MonitoringSettings = MonitoringSettings(), configError: String? = nil) {
            self.jobs = jobs
            failuresWarning = monitoring.failuresWarning
            failuresCritical = monitoring.failuresCritical
            self.configError = configError
        }
    }

    /// `backy check -c CONFIG`: the configuration names the status file and
    /// the jobs. A missing or unreadable configuration is UNKNOWN; one with
    /// errors the scheduler would refuse is checked with what can be read
    /// of it (its global section and job names) and adds a WARNING.
    /// `node`: this node's name (nil: the configuration's `node-name`);
    /// directory jobs limited to other nodes are not expected here.
    public static func run(config path: String, node: String? = nil, now: Date = Date()) -> Result {
        let report: SchedulerConfig.Report
        do {
            let (abs, text) = try SchedulerConfig.readFile(path)
            report = SchedulerConfig.analyze(text, path: abs)
        } catch {
            return Result(code: 3, output: "UNKNOWN: \(error)\n")
        }
        guard let partial = report.partial else {
            return Result(code: 3, output: "UNKNOWN: \(report.errors.first.map { "\($0)" } ?? "cannot read the configuration")\n")
        }
        let me = node ?? partial.cluster.nodeName
        let elsewhere = Set(partial.jobs.filter { $0.store == nil && !$0.runs(on: me) }.map(\.name))
        var expect = Expectations(jobs: report.jobNames.filter { !elsewhere.contains($0) }, monitoring: partial.monitoring)
        expect.configError = report.errors.first?.message
        switch NodeHeartbeats.silentNodes(partial, now: now) {
        case .success(let lines): expect.silentNodes = lines
        case .failure(let e): expect.heartbeatError = e.message
        case nil: break
        }
        return run(statusFile: partial.statusFile, expect: expect, now: now)
    }

    public static func run(statusFile path: String, expect: Expectations = Expectations(), now: Date = Date()) -> Result {
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
        if mtime.timeIntervalSince(now) > maxFutureSkew {
            return Result(code: 2, output: "CRITICAL: Status file is dated in the future (\(StatusFile.formatTime(mtime))): a clock or the file is wrong, so it does not show that the scheduler runs\n")
        }
        let entries: [JobStatusEntry]
        do {
            let bytes = try Posix.readFile(path, limit: Posix.Limit.configuration)
            entries = try StatusFile.parse(String(decoding: bytes, as: UTF8.self), source: path)
        } catch {
            return Result(code: 3, output: "UNKNOWN: Cannot read status file \(path): \(error)\n")
        }
        if entries.isEmpty, let jobs = expect.jobs, !jobs.isEmpty {
            return Result(code: 3, output: "UNKNOWN: Status file \(path) lists no jobs, but \(jobs.count) are configured\n")
        }
        let failed = entries.filter { $0.sla != "OK" }
        let broken = entries.filter { $0.problems != "-" && !$0.problems.isEmpty }
        let failingCritical = entries.filter { $0.failures >= expect.failuresCritical }
        let failingWarning = entries.filter { $0.failures >= expect.failuresWarning && $0.failures < expect.failuresCritical }
        let listed = Set(entries.map(\.job))
        let missing = (expect.jobs ?? []).filter { !listed.contains($0) }
        let oldest = entries.compactMap { StatusFile.parseTime($0.lastTime) }.map { now.timeIntervalSince($0) }.max() ?? 0
        let age = oldest.isFinite ? Int(clamping: Int64(max(0, min(oldest, 9e18)).rounded(.down))) : 0
        var perf = "jobs=\(entries.count);;;0 jobs_out_of_sla=\(failed.count);;;0 oldest_last_backup_age=\(age)s;;;0"
        let drills = drillProblems(entries)
        if drills.configured { perf += " drills_failed=\(drills.critical.count);;;0 drills_late=\(drills.warning.count);;;0" }
        let maxFailures = entries.map(\.failures).max() ?? 0
        perf += " max_failures=\(maxFailures);\(expect.failuresWarning);\(expect.failuresCritical);0"

        func failing(_ e: JobStatusEntry) -> String {
            "\(e.job) (failed \(e.failures) runs in a row\(e.lastError == "-" ? "" : "; last error: \(e.lastError)"))"
        }
        var critical: [String] = []
        var criticalLines: [String] = []
        if !failed.isEmpty {
            critical.append("\(failed.count) jobs not within SLA")
            for e in failed {
                criticalLines.append(e.lastTime == "-" ? "\(e.job) (never backed up; \(e.slaOverdue) s past its SLA)" : "\(e.job) (last time: \(e.lastTime))")
            }
        }
        if !broken.isEmpty {
            critical.append("\(broken.count) jobs with problems")
            for e in broken { criticalLines.append("\(e.job) (problems: \(e.problems))") }
        }
        if !drills.critical.isEmpty { critical.append("\(drills.critical.count) jobs failed their last restore drill") }
        if !failingCritical.isEmpty {
            critical.append("\(failingCritical.count) jobs failed \(expect.failuresCritical) or more runs in a row")
            criticalLines += failingCritical.map(failing)
        }
        if !missing.isEmpty {
            critical.append("\(missing.count) configured jobs missing from the status file")
            criticalLines += missing.map { "\($0) (not in the status file \(path): the scheduler does not run it)" }
        }
        var warning: [String] = []
        var warningLines: [String] = []
        if !failingWarning.isEmpty {
            warning.append("\(failingWarning.count) jobs failed \(expect.failuresWarning) or more runs in a row")
            warningLines += failingWarning.map(failing)
        }
        if !drills.warning.isEmpty { warning.append("\(drills.warning.count) jobs without a recent clean restore drill") }
        if let e = expect.configError {
            warning.append("the configuration has errors (the scheduler refuses it)")
            warningLines.append(e)
        }
        if !expect.silentNodes.isEmpty {
            warning.append("\(expect.silentNodes.count) nodes silent for 3 leases")
            warningLines += expect.silentNodes
        }
        if let e = expect.heartbeatError {
            warning.append("the nodes' heartbeats cannot be read")
            warningLines.append(e)
        }
        if !critical.isEmpty {
            let out = "CRITICAL: \(critical.joined(separator: ", ")) | \(perf)\n"
            return Result(code: 2, output: out + (criticalLines + drills.critical + drills.warning + warningLines).map { $0 + "\n" }.joined())
        }
        if !warning.isEmpty {
            let out = "WARNING: \(warning.joined(separator: ", ")) | \(perf)\n"
            return Result(code: 1, output: out + (warningLines + drills.warning).map { $0 + "\n" }.joined())
        }
        return Result(code: 0, output: "OK: \(entries.count) jobs within SLA | \(perf)\n")
    }
}
