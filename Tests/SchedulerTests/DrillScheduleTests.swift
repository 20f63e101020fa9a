// DrillScheduleTests.swift — scheduled restore drills: the `drill` key (global
// default, per-job override, off, errors), the drill grid (spread per job, half
// an interval after the last drill, catch-up), the drill state for the status
// file, its keys rendered only for jobs with drills, and `check`: CRITICAL for
// a failed drill, WARNING for one too old or that could not run, unchanged
// output for configurations without drills.

import ChunkStore
import Foundation
import Mount
import XCTest

@testable import Scheduler

private let clock = Timestamp.date(year: 2026, month: 3, day: 1, hour: 12)

final class DrillScheduleTests: XCTestCase {
    func config(_ global: String, _ job: String) throws -> SchedulerConfig {
        try SchedulerConfig.parse("""
            global:
              base-dir: /srv/backy
            \(global)
            schedules:
              default:
                daily: {interval: 1d, keep: 7}
            jobs:
              a:
                schedule: default
                source: {type: file, filename: /a.img}
            \(job)
              b:
                schedule: default
                source: {type: file, filename: /b.img}
            """, path: "/etc/backy.conf")
    }

    func testDrillKey() throws {
        var c = try config("", "")
        XCTAssertEqual(c.jobs.map(\.drillInterval), [nil, nil], "no drills unless configured")
        c = try config("  drill: 7d", "")
        XCTAssertEqual(c.jobs.map(\.drillInterval), [7 * 86400, 7 * 86400], "the global default")
        c = try config("  drill: 7d", "    drill: 12h")
        XCTAssertEqual(c.jobs.map(\.drillInterval), [12 * 3600, 7 * 86400], "a job's own interval wins")
        c = try config("  drill: 7d", "    drill: off")
        XCTAssertEqual(c.jobs.map(\.drillInterval), [nil, 7 * 86400])
        c = try config("", "    drill: 3600")
        XCTAssertEqual(c.jobs.map(\.drillInterval), [3600, nil])
        for (g, j, text) in [("  drill: often", "", "global.drill: "), ("", "    drill: [1]", "jobs.a.drill: "),
                             ("", "    drill: -5", "jobs.a.drill: ")] {
            do {
                _ = try config(g, j)
                XCTFail("accepted \(g)\(j)")
            } catch let e as ConfigError {
                XCTAssertTrue(e.message.hasPrefix("/etc/backy.conf: line ") && e.message.contains(text), e.message)
                XCTAssertFalse(e.message.contains("\n"))
            }
        }
        // A changed drill interval is a changed job (reload re-plans it).
        XCTAssertNotEqual(try config("", "    drill: 1d").jobs[0], try config("", "").jobs[0])
    }

    func testGrid() {
        let week = 7 * 86400
        let s = Double(spread(jobName: "vm01", maxInterval: week))
        func onGrid(_ d: Date) -> Bool {
            let t = d.timeIntervalSinceReferenceDate + yearOneToUnixEpoch + 978_307_200
            return (t - s).truncatingRemainder(dividingBy: Double(week)) == 0
        }
        // Never drilled: the next grid point.
        let first = DrillSchedule.next(jobName: "vm01", interval: week, last: nil, now: clock)
        XCTAssertTrue(first > clock && first <= clock.addingTimeInterval(Double(week)))
        XCTAssertTrue(onGrid(first))
        // Other jobs fall elsewhere in the week.
        let others = Set(["vm02", "vm03", "vm04", "vm05"].map { DrillSchedule.next(jobName: $0, interval: week, last: nil, now: clock) })
        XCTAssertGreaterThan(others.count, 1)
        // Drilled at its slot (or a little late): the next slot, one interval on.
        XCTAssertEqual(DrillSchedule.next(jobName: "vm01", interval: week, last: first, now: first.addingTimeInterval(60)),
                       first.addingTimeInterval(Double(week)))
        XCTAssertEqual(DrillSchedule.next(jobName: "vm01", interval: week, last: first.addingTimeInterval(3 * 86400),
                                          now: first.addingTimeInterval(3 * 86400)),
                       first.addingTimeInterval(Double(week)))
        // Overdue (the daemon was down): now.
        let late = first.addingTimeInterval(Double(3 * week))
        XCTAssertEqual(DrillSchedule.next(jobName: "vm01", interval: week, last: first, now: late), late)
    }

    func result(_ verdict: String, age: TimeInterval, failed: [String] = []) -> DrillResult {
        DrillResult(time: Timestamp.iso8601(clock.addingTimeInterval(-age)), revision: "r", revisionTime: nil,
                    verdict: verdict, exitCode: verdict == "clean" ? 0 : verdict == "failed" ? 1 : 2, seconds: 1,
                    partitionTable: "gpt", problems: [],
                    filesystems: failed.map {
                        DrillResult.Filesystem(name: $0, type: "ext4", offset: 0, size: 1, checker: "e2fsck -fn", verdict: "failed",
                                               exitCode: 4, seconds: 1, note: nil, output: [])
                    }, message: nil)
    }

    func testState() {
        let day = 86400
        XCTAssertEqual(DrillSchedule.state(interval: nil, last: result("failed", age: 0), now: clock).state, "-")
        XCTAssertEqual(DrillSchedule.state(interval: day, last: nil, now: clock).state, "OK")
        XCTAssertEqual(DrillSchedule.state(interval: day, last: result("clean", age: 2 * 86400), now: clock).state, "OK")
        XCTAssertEqual(DrillSchedule.state(interval: day, last: result("clean", age: 2 * 86400 + 1), now: clock).state, "TOO OLD")
        let f = DrillSchedule.state(interval: day, last: result("failed", age: 10, failed: ["part1", "part2"]), now: clock)
        XCTAssertEqual(f.state, "FAILED")
        XCTAssertEqual(f.result, "failed: part1,part2")
        XCTAssertEqual(f.time, "2026-03-01 11:59:50 UTC")
        XCTAssertEqual(DrillSchedule.state(interval: day, last: result("error", age: 10), now: clock).state, "ERROR")
    }

    func check(_ entries: [JobStatusEntry]) throws -> Check.Result {
        let d = NSTemporaryDirectory() + "/backy-drillcheck-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: d) }
        try StatusFile.write(path: d + "/status", entries: entries)
        // The last backups were at `backupTime` (whole seconds), checked half
        // a second later: the age in the perfdata is exactly 0 s.
        return Check.run(statusFile: d + "/status", now: backupTime.addingTimeInterval(0.5))
    }

    /// Now, truncated to whole seconds (as the status file writes times):
    /// taken when the test runs, not when XCTest makes the test's instance
    /// (minutes earlier in a full run, which made the status file written
    /// by the test look newer than `now`).
    lazy var backupTime = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))

    func testStatusFileAndCheck() throws {
        var ok = JobStatusEntry(job: "a", sla: "OK", status: "waiting for deadline", lastTime: StatusFile.formatTime(backupTime))
        let plain = StatusFile.render([ok])
        XCTAssertFalse(plain.contains("drill"), "no drill keys without drills")
        let plainCheck = try check([ok])
        XCTAssertEqual(plainCheck.code, 0, plainCheck.output)
        XCTAssertEqual(plainCheck.output.split(separator: "|").dropFirst().first?.contains("drills"), false, plainCheck.output)

        var bad = JobStatusEntry(job: "b", sla: "OK", status: "waiting for deadline", lastTime: StatusFile.formatTime(backupTime))
        (bad.drill, bad.lastDrill, bad.lastDrillResult) = ("FAILED", "2026-03-01 11:00:00 UTC", "failed: part2")
        (ok.drill, ok.lastDrill, ok.lastDrillResult) = ("OK", "2026-03-01 10:00:00 UTC", "clean")
        let text = StatusFile.render([ok, bad])
        XCTAssertTrue(text.contains("drill: FAILED, failures: 0, job: b, last_drill: '2026-03-01 11:00:00 UTC', last_drill_epoch: 1772362800, last_drill_result: 'failed: part2'"), text)
        XCTAssertEqual(try StatusFile.parse(text, source: "t"), [ok, bad])

        let crit = try check([ok, bad])
        XCTAssertEqual(crit.code, 2)
        XCTAssertEqual(crit.output.split(separator: "\n").map(String.init), [
            "CRITICAL: 1 jobs failed their last restore drill | jobs=2;;;0 jobs_out_of_sla=0;;;0 oldest_last_backup_age=0s;;;0 drills_failed=1;;;0 drills_late=0;;;0 max_failures=0;3;6;0",
            "b (last drill: 2026-03-01 11:00:00 UTC, failed: part2)",
        ])
        var old = bad
        (old.drill, old.lastDrillResult) = ("TOO OLD", "clean")
        let warn = try check([ok, old])
        XCTAssertEqual(warn.code, 1)
        XCTAssertTrue(warn.output.hasPrefix("WARNING: 1 jobs without a recent clean restore drill | "), warn.output)
        XCTAssertTrue(warn.output.contains("\nb (last drill: 2026-03-01 11:00:00 UTC, too old)\n"), warn.output)
        // SLA and drill problems together: CRITICAL names both.
        var late = old
        late.sla = "TOO OLD"
        let both = try check([bad, late])
        XCTAssertEqual(both.code, 2)
        XCTAssertTrue(both.output.hasPrefix("CRITICAL: 1 jobs not within SLA, 1 jobs failed their last restore drill | "), both.output)
        XCTAssertEqual(try check([ok]).code, 0)
    }
}
