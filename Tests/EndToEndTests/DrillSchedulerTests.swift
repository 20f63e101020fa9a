// DrillSchedulerTests: scheduled restore drills under the real `backy
// scheduler`: a job backed up every 3 s from a sound ext4 disk and drilled
// every 2 s never has a drill beside its own backup and stays clean; a job
// backed up (by hand) from the damaged disk fails its drills, the status file
// says so, `check` turns CRITICAL naming it, and the console shows both jobs'
// last drills.
import Foundation
import TestSupport
import XCTest

final class DrillSchedulerTests: XCTestCase {
    /// Each test gets its own TMPDIR (see PrivateTMPDIR).
    var tmpdir: PrivateTMPDIR!

    override func setUp() {
        super.setUp()
        tmpdir = PrivateTMPDIR("drill-scheduler")
    }

    override func tearDown() {
        tmpdir.restore()
        super.tearDown()
    }

    func testScheduledDrillsAndCheck() throws {
        try MountFixture.require(DrillTests.tools)
        // Backups every 3 s (wider under a sanitizer, whose backups of
        // alpha's disk can take longer than the SLA of a 3 s interval).
        let quick = Int(TestSlack.scaled(3.0))
        // Drills every 2 s, as widely scaled: a sanitized drill takes
        // several seconds, and a fixed 2 s would make alpha's drills late.
        let drill = Int(TestSlack.scaled(2.0))
        let s = SchedulerHarness(self, schedules: "  quick:\n    short: {interval: \(quick)s, keep: 2}\n  slow:\n    daily: {interval: 1d, keep: 2}")
        // alpha's disk holds 96 MiB of random data, so that its backups take a
        // while and other jobs' deadlines wake the planner meanwhile.
        let good = s.dir + "/alpha.img"
        MountFixture.tree(s.dir + "/alpha-tree", seed: MountFixture.seed &+ 30)
        MountFixture.sh("head -c 96M /dev/urandom > \(s.dir)/alpha-tree/random && mkfs.ext4 -q -F -d \(s.dir)/alpha-tree \(good) 160M")
        let bad = MountFixture.damaged(s.dir + "/damaged", seed: MountFixture.seed &+ 31)
        // The damaged job has its revision before the scheduler starts (its
        // next backup is a day away): only drills run for it.
        _ = MountFixture.job(s.base, bad.image, name: "omega")
        s.jobsYAML.append("  alpha:\n    schedule: quick\n    drill: \(drill)s\n    source: {type: file, filename: \(good)}")
        s.jobsYAML.append("  omega:\n    schedule: slow\n    drill: \(drill)s\n    source: {type: file, filename: \(bad.image)}")
        s.start()

        XCTAssertTrue(s.wait(timeout: TestSlack.scaled(90.0)) {
            s.logText.components(separatedBy: "alpha: finished restore drill with return code 0").count > 3
                && s.logText.contains("omega: finished restore drill with return code 1")
                && s.logText.components(separatedBy: "alpha: running backup").count > 2
        }, "drills ran; log:\n\(s.logText)")

        // Never a drill beside the job's own backup (backup, expiry, purge).
        var inBackup = false, inDrill = false, backups = 0
        for line in s.logText.split(separator: "\n") where line.contains(" alpha: ") {
            if line.contains("alpha: running backup") { inBackup = true; backups += 1 }
            if line.contains("alpha: finished purging") { inBackup = false }
            if line.contains("alpha: running restore drill") { inDrill = true }
            if line.contains("alpha: finished restore drill") { inDrill = false }
            XCTAssertFalse(inBackup && inDrill, "drill beside backup at: \(line)")
        }
        XCTAssertGreaterThan(backups, 1)
        XCTAssertTrue(s.jobLog("alpha").contains(" drill"), "the drill runs as backy -b JOB -l JOB/backy.log drill")

        // The status file and check.
        var check = E2E.backy(["check", "-c", s.config])
        s.wait(timeout: TestSlack.scaled(30.0)) {
            check = E2E.backy(["check", "-c", s.config])
            return check.code == 2
        }
        XCTAssertEqual(check.code, 2, check.out)
        let lines = check.out.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines[0].hasPrefix("CRITICAL: 1 jobs failed their last restore drill | jobs=2;;;0 jobs_out_of_sla=0;;;0"), check.out)
        XCTAssertTrue(lines[0].contains(" drills_failed=1;;;0 drills_late=0;;;0"), check.out)
        XCTAssertEqual(lines.count, 2, check.out)
        XCTAssertTrue(lines[1].hasPrefix("omega (last drill: ") && lines[1].hasSuffix(", failed: part1,part2)"), check.out)
        let status = try String(contentsOfFile: s.statusFile, encoding: .utf8)
        XCTAssertTrue(status.contains("drill: FAILED") && status.contains("last_drill_result: 'failed: part1,part2'"), status)
        XCTAssertTrue(status.contains("drill: OK"), status)

        // The console's jobs table has a Last Drill column.
        let table = s.console("jobs")
        XCTAssertTrue(table.contains("Last Drill (UTC)"), table)
        XCTAssertTrue(s.jobsRow("omega").contains("failed: part1,part2"), s.jobsRow("omega"))
        XCTAssertTrue(s.jobsRow("alpha").contains(" clean"), s.jobsRow("alpha"))
        // Stopping the scheduler stops a running drill (SIGTERM): its private
        // mount goes with it (the watchdog), its pins with the next purge.
        XCTAssertEqual(s.stop(), 0)
        XCTAssertTrue(MountFixture.eventually(10) { self.tmpdir.noMounts })
        XCTAssertEqual(E2E.backy(["-b", s.base + "/alpha", "purge"]).code, 0)
        XCTAssertEqual(MountFixture.pins(s.base + "/alpha"), [])
    }
}
