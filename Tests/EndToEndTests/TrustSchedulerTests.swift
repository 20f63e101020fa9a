// TrustSchedulerTests: the real scheduler with broken jobs beside a healthy
// one. A job directory that cannot be prepared, revision files with bad
// ids, absurd or future timestamps, YAML bombs and a revision without its
// map fail (or flag) that job only: the daemon keeps running, the healthy
// job backs up, the failures are counted, and the status file, `check` and
// the console say what is wrong. A future-dated revision never makes a job
// look fresh.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class TrustSchedulerTests: XCTestCase {
    func testBrokenJobsFailAloneAndAreShown() throws {
        print("seed \(Trust.seed)")
        let h = SchedulerHarness(self, schedules: "  default:\n    daily: {interval: 1d, keep: 1}")
        h.addJob("healthy", schedule: "default")
        h.addJob("hostile", schedule: "default")
        h.addJob("notadir", schedule: "default")
        h.addJob("stale", schedule: "default", image: "images/missing.img")
        // notadir: its job directory is a regular file.
        E2E.write(h.base + "/notadir", [1, 2, 3], at: 0)
        // hostile: a real job with one revision, and hostile files beside it.
        let hostile = h.base + "/hostile"
        XCTAssertEqual(E2E.backy(["-b", hostile, "init", "file", h.dir + "/images/hostile.img"]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", hostile, "backup", "daily"]).code, 0)
        let real = E2E.revisionIDs(hostile)[0]
        let old = "2020-01-01 00:00:00+00:00"
        Trust.writeRev(hostile, name: "z.z.rev", uuid: "z.z", timestamp: old)
        Trust.writeRev(hostile, name: "config.rev", uuid: "config", timestamp: old, duration: nil)
        try Trust.cloneRevision(hostile, from: real, to: Trust.newID(1), timestamp: "1e300")
        try Trust.cloneRevision(hostile, from: real, to: Trust.newID(2), timestamp: "9223372036854775807")
        let future = Trust.newID(3)
        try Trust.cloneRevision(hostile, from: real, to: future, timestamp: "2099-01-01 00:00:00+00:00")
        let damaged = Trust.newID(4)
        // (tagged by hand, so expiry keeps it)
        try Trust.cloneRevision(hostile, from: real, to: damaged, timestamp: "2021-01-01 00:00:00+00:00", tags: "[manual]")
        unlink(hostile + "/\(damaged).map")
        let bombID = Trust.newID(5)
        try (TrustStoreTests.bomb + "uuid: \(bombID)\ntimestamp: 2020-01-01 00:00:00\nstats: {duration: 1}\n")
            .write(toFile: hostile + "/\(bombID).rev", atomically: true, encoding: .utf8)
        // stale: its only real revision is 3 days old, beside one from 2099;
        // its source is missing, so it cannot catch up.
        let stale = h.base + "/stale"
        XCTAssertEqual(E2E.backy(["-b", stale, "init", "file", h.dir + "/images/healthy.img"]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", stale, "backup", "daily"]).code, 0)
        let staleReal = E2E.revisionIDs(stale)[0]
        let threeDays = RevTime.format(Date().addingTimeInterval(-3 * 86400))
        try Trust.cloneRevision(stale, from: staleReal, to: Trust.newID(6), timestamp: threeDays)
        try Trust.cloneRevision(stale, from: staleReal, to: Trust.newID(7), timestamp: "2099-06-01 00:00:00+00:00")
        XCTAssertEqual(E2E.backy(["-b", stale, "forget", "-r", staleReal]).code, 0)
        // ... and a symlink planted as its backy.log, which the scheduler's
        // children must not follow.
        let victim = h.dir + "/victim"
        E2E.write(victim, Array("precious\n".utf8), at: 0)
        unlink(stale + "/backy.log")
        symlink(victim, stale + "/backy.log")

        h.start()
        guard h.process?.isRunning ?? false else {
            return XCTFail("the daemon must run beside the broken jobs: \(h.logText)")
        }
        XCTAssertTrue(h.console("runall").contains("Triggered immediate run for healthy"))
        XCTAssertTrue(h.wait(timeout: 90) { h.createdRevisions("healthy") >= 1 && h.revisions("healthy").count >= 1 },
                      "the healthy job backs up: \(h.logText)")
        XCTAssertTrue(h.wait(timeout: 90) {
            let s = (try? String(contentsOfFile: h.statusFile, encoding: .utf8)) ?? ""
            let failed = { (job: String) in
                s.split(separator: "\n").contains { $0.contains("job: \(job),") && !$0.contains("failures: 0,") }
            }
            return failed("notadir") && failed("stale")
                && h.logText.contains("hostile: finished purging")
        }, "the broken jobs' runs fail and are counted: \((try? String(contentsOfFile: h.statusFile, encoding: .utf8)) ?? "")\n\(h.logText)")
        XCTAssertTrue(h.process?.isRunning ?? false, "the daemon survived expiry and the status writer: \(h.logText)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: hostile + "/z.z.rev"), "never deleted")
        XCTAssertTrue(FileManager.default.fileExists(atPath: hostile + "/config"))

        let status = try String(contentsOfFile: h.statusFile, encoding: .utf8)
        let lines = status.split(separator: "\n").map(String.init)
        let line = { (job: String) in lines.first { $0.contains("job: \(job),") } ?? "" }
        XCTAssertFalse(line("healthy").contains("problems"), line("healthy"))
        XCTAssertTrue(line("notadir").contains("problems: 'cannot prepare the job directory \(h.base)/notadir"), line("notadir"))
        for what in ["ignoring 5 revision file(s)", "1 damaged revision(s): \(damaged)", "dated in the future, e.g. \(future)"] {
            XCTAssertTrue(line("hostile").contains(what), "\(what): \(line("hostile"))")
        }
        XCTAssertTrue(line("stale").contains("sla: TOO OLD"), "a revision from 2099 does not make it fresh: \(line("stale"))")
        XCTAssertTrue(line("hostile").contains("sla: OK"), line("hostile"))

        let check = E2E.backy(["check", "-c", h.config])
        XCTAssertEqual(check.code, 2, check.out)
        XCTAssertTrue(check.out.hasPrefix("CRITICAL: 1 jobs not within SLA, 3 jobs with problems | jobs=4;;;0 jobs_out_of_sla=1;;;0"), check.out)
        XCTAssertTrue(check.out.contains("\nstale (last time: "), check.out)
        XCTAssertTrue(check.out.contains("\nhostile (problems: "), check.out)
        XCTAssertTrue(check.out.contains("\nnotadir (problems: cannot prepare the job directory"), check.out)
        XCTAssertFalse(check.out.contains("healthy"), check.out)

        XCTAssertTrue(h.jobsRow("hostile").contains("problems: "), h.jobsRow("hostile"))
        XCTAssertTrue(h.jobsRow("notadir").contains("failed"), h.jobsRow("notadir"))
        XCTAssertFalse(h.jobsRow("healthy").contains("problems"), h.jobsRow("healthy"))
        XCTAssertTrue(h.logText.contains("hostile: problems: "), "logged with the reason")
        XCTAssertEqual(Trust.bytes(victim), Array("precious\n".utf8), "no child wrote through the planted log symlink")
        XCTAssertEqual(h.stop(), 0, h.logText)
    }
}

/// A `.rev` timestamp ("YYYY-MM-DD HH:MM:SS+00:00") for a date.
enum RevTime {
    static func format(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: d) + "+00:00"
    }
}

extension TrustSchedulerTests {
    /// Only hostile revision files (no broken directory): a revision id
    /// that is no id expires, a timestamp of 1e300 reaches the status
    /// writer; the daemon keeps running and keeps backing up.
    func testHostileRevisionFilesNeverStopTheDaemon() throws {
        let h = SchedulerHarness(self, schedules: "  default:\n    daily: {interval: 1d, keep: 1}")
        h.addJob("healthy", schedule: "default")
        h.addJob("hostile", schedule: "default")
        let hostile = h.base + "/hostile"
        XCTAssertEqual(E2E.backy(["-b", hostile, "init", "file", h.dir + "/images/hostile.img"]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", hostile, "backup", "daily"]).code, 0)
        let real = E2E.revisionIDs(hostile)[0]
        Trust.writeRev(hostile, name: "z.z.rev", uuid: "z.z", timestamp: "2020-01-01 00:00:00+00:00")
        try Trust.cloneRevision(hostile, from: real, to: Trust.newID(1), timestamp: "1e300")
        h.start()
        guard h.process?.isRunning ?? false else { return XCTFail("the daemon must start: \(h.logText)") }
        _ = h.console("runall")
        XCTAssertTrue(h.wait(timeout: 90) { h.logText.contains("hostile: finished purging") && h.logText.contains("healthy: finished purging") },
                      h.logText)
        usleep(1_500_000)  // a status write or two after the runs
        XCTAssertTrue(h.process?.isRunning ?? false, "still running after expiry and status writes: \(h.logText)")
        XCTAssertEqual(E2E.revisionIDs(hostile).count, 2, "the first revision (younger than its interval) and the new one")
        XCTAssertTrue(FileManager.default.fileExists(atPath: hostile + "/z.z.rev"))
        XCTAssertEqual(h.stop(), 0, h.logText)
    }
}
