// OperatorCheckTests: monitoring that catches a failing job, end to end
// (issue 16, point 3): a real scheduler with a job whose source is missing
// — the log, the console (table and `jobs --json`) and the status file show
// its last error, `check` turns WARNING and then CRITICAL as failures
// accumulate, a job that never succeeded within its SLA is CRITICAL; and
// check's states for a missing configuration, an empty status file, one
// that omits a job, one dated in the future.
import Foundation
import XCTest

final class OperatorCheckTests: XCTestCase {
    func testFailingJob() throws {
        let s = SchedulerHarness(self, schedules: "  daily: {daily: {interval: 1d, keep: 3}}",
                                 extraGlobal: "  failures-warning: 2\n  failures-critical: 3")
        s.addJob("good", schedule: "daily")
        s.jobsYAML.append("  broken:\n    schedule: daily\n    source: {type: file, filename: images/missing.img}")
        s.start()
        XCTAssertTrue(s.console("run good").contains("Triggered"))
        XCTAssertTrue(s.wait(timeout: 60) { s.logText.contains("good: finished backup with return code 0") }, s.logText)
        // Fail `broken` three times (the console's `run` also skips the back-off).
        for n in 1...3 {
            XCTAssertTrue(s.wait(timeout: 60) { s.console("run broken").contains("Triggered") }, s.logText)
            XCTAssertTrue(s.wait(timeout: 60) { s.logText.components(separatedBy: "broken: retrying in").count - 1 >= n }, s.logText)
            if n == 2 {
                // Two failures: WARNING (failures-warning: 2).
                var check = E2E.backy(["check", "-c", s.config])
                XCTAssertTrue(s.wait(timeout: 10) {
                    check = E2E.backy(["check", "-c", s.config])
                    return check.code == 1
                }, check.out)
                XCTAssertTrue(check.out.hasPrefix("WARNING: 1 jobs failed 2 or more runs in a row | "), check.out)
            }
        }
        // The scheduler's log names the reason with the return code.
        let logLine = try XCTUnwrap(s.logText.split(separator: "\n").first { $0.contains("broken: finished backup with return code 1: ") }, s.logText)
        XCTAssertTrue(logLine.contains("Error: ") && logLine.contains("missing.img"), String(logLine))
        // The console: the table and the JSON.
        let row = s.jobsRow("broken")
        XCTAssertTrue(row.contains("(3 failed); last error: Error: "), row)
        let json = s.console("jobs --json broken")
        let line = try XCTUnwrap(json.split(separator: "\n").first { $0.hasPrefix("[") }, json)
        let list = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [[String: Any]])
        XCTAssertEqual(list.count, 1)
        XCTAssertEqual(list[0]["job"] as? String, "broken")
        XCTAssertEqual(list[0]["failures"] as? Int, 3)
        XCTAssertTrue((list[0]["last_error"] as? String)?.contains("missing.img") ?? false, "\(list[0])")
        XCTAssertTrue(list[0]["last_time_epoch"] is NSNull)
        let all = try XCTUnwrap(s.console("jobs --json").split(separator: "\n").first { $0.hasPrefix("[") })
        let both = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(all.utf8)) as? [[String: Any]])
        XCTAssertEqual(both.map { $0["job"] as? String }, ["broken", "good"])
        let good = both[1]
        XCTAssertEqual(good["revisions"] as? Int, 1)
        // The status file: 2.4's keys plus numbers, and the error line.
        XCTAssertTrue(s.wait(timeout: 10) { ((try? String(contentsOfFile: s.statusFile, encoding: .utf8)) ?? "").contains("last_error") })
        let status = try String(contentsOfFile: s.statusFile, encoding: .utf8)
        let revs = E2E.statusRevisions(E2E.backy(["-b", s.base + "/good", "status", "--json"]).stdout)
        let ts = try XCTUnwrap(revs.first?["timestamp"] as? String)
        let epoch = Int(try XCTUnwrap(ISO8601DateFormatter().date(from: String(ts.prefix(19)) + "Z")).timeIntervalSince1970)
        XCTAssertEqual(good["last_time_epoch"] as? Int, epoch)
        XCTAssertTrue(status.contains("last_time_epoch: \(epoch)"), status)
        for key in ["job:", "sla:", "status:", "last_time:", "last_tags:", "last_duration:", "next_time:", "next_tags:",
                    "sla_overdue:", "failures:", "last_duration_seconds:", "next_time_epoch:", "revisions:"] {
            XCTAssertTrue(status.contains(key), "\(key) in\n\(status)")
        }

        // Three failures: CRITICAL for the failures (once the status file shows them).
        var check = E2E.backy(["check", "-c", s.config])
        XCTAssertTrue(s.wait(timeout: 10) {
            check = E2E.backy(["check", "-c", s.config])
            return check.code == 2
        }, check.out)
        XCTAssertTrue(check.out.hasPrefix("CRITICAL: 1 jobs failed 3 or more runs in a row | "), check.out)
        XCTAssertTrue(check.out.contains(" max_failures=3;2;3;0"), check.out)
        XCTAssertTrue(check.out.contains("\nbroken (failed 3 runs in a row; last error: Error: "), check.out)
        XCTAssertEqual(s.stop(), 0)
    }

    func testNeverSucceededWithinSLA() throws {
        // `fast` gives an SLA of 1.5 × 40 s = 60 s; the job never succeeds.
        let s = SchedulerHarness(self, schedules: "  fast: {fast: {interval: 40s, keep: 3}}")
        s.jobsYAML.append("  never:\n    schedule: fast\n    source: {type: file, filename: images/missing.img}")
        s.start()
        let started = Date()
        var check = E2E.backy(["check", "-c", s.config])
        XCTAssertTrue(s.wait(timeout: 20) {
            check = E2E.backy(["check", "-c", s.config])
            return check.code != 3
        }, check.out)
        XCTAssertFalse(check.out.contains("not within SLA"), "not yet: \(check.out)")
        XCTAssertTrue(s.wait(timeout: 120) {
            check = E2E.backy(["check", "-c", s.config])
            return check.out.contains("1 jobs not within SLA")
        }, check.out)
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 55, "only after 60 s")
        XCTAssertTrue(check.out.hasPrefix("CRITICAL: 1 jobs not within SLA | "), check.out)
        XCTAssertTrue(check.out.contains("\nnever (never backed up; "), check.out)
        XCTAssertEqual(check.code, 2)
        XCTAssertEqual(s.stop(), 0)
    }

    func testWarningThenRecovery() throws {
        let s = SchedulerHarness(self, schedules: "  daily: {daily: {interval: 1d, keep: 3}}")
        s.addJob("flaky", schedule: "daily")
        let image = s.dir + "/images/flaky.img"
        // The source goes away before the first run (at start: no backup yet).
        try FileManager.default.moveItem(atPath: image, toPath: image + ".away")
        s.start()
        for n in 1...3 {
            XCTAssertTrue(s.wait(timeout: 60) { s.console("run flaky").contains("Triggered") }, s.logText)
            XCTAssertTrue(s.wait(timeout: 60) { s.logText.components(separatedBy: "flaky: retrying in").count - 1 >= n }, s.logText)
        }
        var check = E2E.backy(["check", "-c", s.config])
        XCTAssertTrue(s.wait(timeout: 10) {
            check = E2E.backy(["check", "-c", s.config])
            return check.code == 1
        }, check.out)
        XCTAssertTrue(check.out.hasPrefix("WARNING: 1 jobs failed 3 or more runs in a row | "), check.out)
        XCTAssertTrue(check.out.contains("\nflaky (failed 3 runs in a row; last error: Error: "), check.out)
        // The source is back: one good run and all is OK again.
        try FileManager.default.moveItem(atPath: image + ".away", toPath: image)
        XCTAssertTrue(s.wait(timeout: 60) { s.console("run flaky").contains("Triggered") })
        XCTAssertTrue(s.wait(timeout: 60) { s.logText.contains("flaky: finished backup with return code 0") }, s.logText)
        XCTAssertTrue(s.wait(timeout: 10) {
            check = E2E.backy(["check", "-c", s.config])
            return check.code == 0
        }, check.out)
        XCTAssertFalse(s.jobsRow("flaky").contains("last error"))
        XCTAssertEqual(s.stop(), 0)
    }

    func testStatusFileAndConfigurationStates() throws {
        let dir = E2E.tempDir(self, "check")
        try FileManager.default.createDirectory(atPath: dir + "/base", withIntermediateDirectories: true)
        let config = dir + "/backy.conf"
        try """
            global: {base-dir: base}
            schedules: {daily: {daily: {interval: 1d, keep: 3}}}
            jobs:
              vm1: {schedule: daily, source: {type: file, filename: /dev/null}}
              vm2: {schedule: daily, source: {type: file, filename: /dev/null}}

            """.write(toFile: config, atomically: true, encoding: .utf8)
        let status = dir + "/base/status"
        func writeStatus(_ text: String, mtime: Date = Date()) throws {
            try text.write(toFile: status, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.modificationDate: mtime], ofItemAtPath: status)
        }
        // Missing configuration: UNKNOWN (3), not WARNING.
        var r = E2E.backy(["check", "-c", dir + "/nope.conf"])
        XCTAssertEqual(r.code, 3)
        XCTAssertEqual(r.out, "UNKNOWN: configuration file \(dir)/nope.conf does not exist\n")
        // Unreadable (a directory).
        r = E2E.backy(["check", "-c", dir])
        XCTAssertEqual(r.code, 3)
        XCTAssertTrue(r.out.hasPrefix("UNKNOWN: "), r.out)
        // An empty status file while two jobs are configured: UNKNOWN.
        try writeStatus("")
        r = E2E.backy(["check", "-c", config])
        XCTAssertEqual(r.code, 3, r.out)
        XCTAssertEqual(r.out, "UNKNOWN: Status file \(status) lists no jobs, but 2 are configured\n")
        try writeStatus("[]\n")
        XCTAssertEqual(E2E.backy(["check", "-c", config]).code, 3)
        // A truncated one (a half-written flow mapping): UNKNOWN.
        try writeStatus("- {job: vm1, sla: OK, status: waiting for dead")
        r = E2E.backy(["check", "-c", config])
        XCTAssertEqual(r.code, 3, r.out)
        XCTAssertTrue(r.out.hasPrefix("UNKNOWN: Cannot read status file "), r.out)
        // One that omits a configured job: CRITICAL for that job.
        let vm1 = "- {failures: 0, job: vm1, last_duration: '-', last_tags: '-', last_time: '-', next_tags: '-', next_time: '-', sla: OK, sla_overdue: 0, status: waiting for deadline}\n"
        try writeStatus(vm1)
        r = E2E.backy(["check", "-c", config])
        XCTAssertEqual(r.code, 2, r.out)
        XCTAssertTrue(r.out.hasPrefix("CRITICAL: 1 configured jobs missing from the status file | jobs=1;;;0 "), r.out)
        XCTAssertTrue(r.out.hasSuffix("\nvm2 (not in the status file \(status): the scheduler does not run it)\n"), r.out)
        // Both jobs: OK.
        try writeStatus(vm1 + vm1.replacingOccurrences(of: "vm1", with: "vm2"))
        r = E2E.backy(["check", "-c", config])
        XCTAssertEqual(r.code, 0, r.out)
        XCTAssertTrue(r.out.hasPrefix("OK: 2 jobs within SLA | "), r.out)
        // Dated in the future (a wrong clock or a touched file): not fresh.
        try writeStatus(vm1 + vm1.replacingOccurrences(of: "vm1", with: "vm2"), mtime: Date().addingTimeInterval(3600))
        r = E2E.backy(["check", "-c", config])
        XCTAssertEqual(r.code, 2, r.out)
        XCTAssertTrue(r.out.hasPrefix("CRITICAL: Status file is dated in the future ("), r.out)
        // A configuration the scheduler would refuse: WARNING, with the error.
        try writeStatus(vm1 + vm1.replacingOccurrences(of: "vm1", with: "vm2"))
        let good = try String(contentsOfFile: config, encoding: .utf8)
        try good.replacingOccurrences(of: "vm2: {schedule: daily", with: "vm2: {schedule: hourly").write(toFile: config, atomically: true, encoding: .utf8)
        r = E2E.backy(["check", "-c", config])
        XCTAssertEqual(r.code, 1, r.out)
        XCTAssertTrue(r.out.hasPrefix("WARNING: the configuration has errors (the scheduler refuses it) | "), r.out)
        XCTAssertTrue(r.out.contains("\n\(config): line 5: jobs.vm2.schedule: unknown schedule \"hourly\" (defined: daily)\n"), r.out)
    }
}
