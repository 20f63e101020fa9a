// StatusCheckTests.swift — the status file and `backy check` (README.md,
// "Monitoring with `backy check`"): keys and values, SLA boundary, exact check lines and exit codes, perfdata.

import ChunkStore
import Foundation
import XCTest

@testable import Scheduler

private let clock = Timestamp.date(year: 2015, month: 9, day: 1, hour: 7, minute: 6, second: 47)

final class SchedulerStatusFileTests: XCTestCase {
    let daily = try! Schedule(["daily": ScheduleTag(interval: 86400, keep: 5), "weekly": ScheduleTag(interval: 604_800, keep: 4)])

    func history(age: TimeInterval?, tags: Set<String> = ["daily", "weekly"], duration: Double = 31.14) -> JobHistory {
        guard let age else { return JobHistory() }
        let t = clock.addingTimeInterval(-age)
        return JobHistory(revisions: [ScheduleRevision(id: "r", timestamp: t, tags: tags, complete: true)],
                          last: LastBackup(id: "r", timestamp: t, tags: tags, duration: duration))
    }

    func testEntryValues() {
        let e = JobStatusEntry.make(job: "test01", schedule: daily, history: history(age: 3600), status: "waiting for deadline",
                                    nextTime: clock.addingTimeInterval(80000), nextTags: ["weekly", "daily", "adhoc"], failures: 0, now: clock)
        XCTAssertEqual(e.sla, "OK")
        XCTAssertEqual(e.lastTime, "2015-09-01 06:06:47 UTC")
        XCTAssertEqual(e.lastTags, "daily,weekly", "sorted by interval")
        XCTAssertEqual(e.lastDuration, "31.1 s")
        XCTAssertEqual(e.nextTime, "2015-09-02 05:20:07 UTC")
        XCTAssertEqual(e.nextTags, "adhoc,daily,weekly", "unknown tags first")
        XCTAssertEqual(e.slaOverdue, 0)

        let none = JobStatusEntry.make(job: "new", schedule: daily, history: JobHistory(), status: "", nextTime: nil,
                                       nextTags: [], failures: 0, now: clock)
        XCTAssertEqual([none.sla, none.lastTime, none.lastTags, none.lastDuration, none.nextTime, none.nextTags],
                       ["OK", "-", "-", "-", "-", "-"], "a job without backups is within its SLA")
    }

    func testSLABoundaryIsOneAndAHalfSmallestIntervals() {
        func sla(_ age: TimeInterval) -> (String, Int) {
            let e = JobStatusEntry.make(job: "j", schedule: daily, history: history(age: age), status: "", nextTime: nil,
                                        nextTags: [], failures: 0, now: clock)
            return (e.sla, e.slaOverdue)
        }
        XCTAssertEqual(sla(36 * 3600).0, "OK")
        XCTAssertEqual(sla(36 * 3600 + 1).0, "TOO OLD")
        XCTAssertEqual(sla(36 * 3600 + 1).1, 1)
        XCTAssertEqual(sla(48 * 3600).1, 12 * 3600)
    }

    func testRenderedLikePyYAMLFlowAndParsedBack() throws {
        let entries = [
            JobStatusEntry(job: "test01", sla: "OK", status: "waiting for deadline", lastTime: "2015-09-01 07:06:47 UTC",
                           lastTags: "daily,weekly", lastDuration: "31.1 s", nextTime: "2015-09-02 05:32:51 UTC", nextTags: "daily"),
            JobStatusEntry(job: "test02", sla: "TOO OLD", status: "waiting for retry", slaOverdue: 17, failures: 2),
        ]
        let text = StatusFile.render(entries)
        XCTAssertEqual(text, """
            - {failures: 0, job: test01, last_duration: 31.1 s, last_tags: 'daily,weekly', last_time: '2015-09-01 07:06:47 UTC', last_time_epoch: 1441091207, next_tags: daily, next_time: '2015-09-02 05:32:51 UTC', next_time_epoch: 1441171971, revisions: 0, sla: OK, sla_overdue: 0, status: waiting for deadline}
            - {failures: 2, job: test02, last_duration: '-', last_tags: '-', last_time: '-', next_tags: '-', next_time: '-', revisions: 0, sla: TOO OLD, sla_overdue: 17, status: waiting for retry}

            """)
        XCTAssertEqual(try StatusFile.parse(text, source: "status"), entries)
        XCTAssertEqual(StatusFile.render([]), "[]\n")
        XCTAssertEqual(try StatusFile.parse("[]\n", source: "status"), [])
    }

    func testReadsBackyTwoFourStatusFile() throws {
        // PyYAML 3.11's output of 2.4.3, wrapped lines included.
        let text = """
            - {job: test01, last_duration: 31.1 s, last_tags: 'daily,weekly', last_time: '2015-09-01
                07:06:47 UTC', next_tags: daily, next_time: '2015-09-02 05:32:51 UTC', sla: OK,
              status: waiting for deadline}

            """
        let e = try StatusFile.parse(text, source: "status")
        XCTAssertEqual(e.count, 1)
        XCTAssertEqual(e[0].lastTime, "2015-09-01 07:06:47 UTC")
        XCTAssertEqual(e[0].status, "waiting for deadline")
    }
}

final class SchedulerCheckTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "backy-check-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func write(_ entries: [JobStatusEntry], mtime: Date? = nil) throws -> String {
        let path = dir + "/status"
        try StatusFile.write(path: path, entries: entries)
        if let mtime { try FileManager.default.setAttributes([.modificationDate: mtime], ofItemAtPath: path) }
        return path
    }

    func testNoStatusFileIsUnknown() {
        let r = Check.run(statusFile: dir + "/missing")
        XCTAssertEqual(r.code, 3)
        XCTAssertEqual(r.output, "UNKNOWN: No status file found at \(dir)/missing\n")
    }

    func testStaleStatusFileIsCritical() throws {
        let now = Date()
        let path = try write([], mtime: now.addingTimeInterval(-301))
        XCTAssertEqual(Check.run(statusFile: path, now: now), Check.Result(code: 2, output: "CRITICAL: Status file is older than 5 minutes\n"))
        _ = try write([], mtime: now.addingTimeInterval(-299))
        XCTAssertEqual(Check.run(statusFile: path, now: now).code, 0)
    }

    func testOKWithPerfdata() throws {
        let now = clock.addingTimeInterval(100)
        let path = try write([
            JobStatusEntry(job: "a", sla: "OK", status: "", lastTime: "2015-09-01 07:06:47 UTC"),
            JobStatusEntry(job: "b", sla: "OK", status: "", lastTime: "2015-09-01 06:06:47 UTC"),
            JobStatusEntry(job: "c", sla: "OK", status: ""),
        ], mtime: now)
        XCTAssertEqual(Check.run(statusFile: path, now: now),
                       Check.Result(code: 0, output: "OK: 3 jobs within SLA | jobs=3;;;0 jobs_out_of_sla=0;;;0 oldest_last_backup_age=3700s;;;0 max_failures=0;3;6;0\n"))
    }

    func testJobsOutOfSLAAreCriticalAndListed() throws {
        // The exact vector of test_daemon.py::test_check_too_old, with perfdata after " | ".
        let now = clock
        let path = try write([
            JobStatusEntry(job: "test01", sla: "TOO OLD", status: "", lastTime: "2015-08-30 07:06:47 UTC"),
            JobStatusEntry(job: "test02", sla: "OK", status: ""),
        ], mtime: now)
        let r = Check.run(statusFile: path, now: now)
        XCTAssertEqual(r.code, 2)
        XCTAssertEqual(r.output, "CRITICAL: 1 jobs not within SLA | jobs=2;;;0 jobs_out_of_sla=1;;;0 oldest_last_backup_age=172800s;;;0 max_failures=0;3;6;0\ntest01 (last time: 2015-08-30 07:06:47 UTC)\n")
    }

    func testGarbageStatusFileIsUnknown() throws {
        let path = dir + "/status"
        try "{not: a list}\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = Check.run(statusFile: path)
        XCTAssertEqual(r.code, 3)
        XCTAssertTrue(r.output.hasPrefix("UNKNOWN: Cannot read status file \(path): "), r.output)
    }
}
