// SchedulerTests: `backy scheduler` and `backy check` end to end, through the
// built binary: scheduled backups of three file jobs with second-long intervals,
// expiry of old revisions, `check` OK, a missing source backing off (visible in
// `jobs`), `run` starting a job at once, SIGHUP adding a job, a clean stop; runs
// that exit 0 without a revision back off too; SIGTERM stops running children;
// configuration errors, the daemon lock and check's exit codes.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class SchedulerEndToEndTests: XCTestCase {
    static let quick = "  quick:\n    short: {interval: 3s, keep: 2}"

    func testScheduledBackupsExpiryCheckBackoffRunAndReload() throws {
        let s = SchedulerHarness(self, schedules: Self.quick)
        s.addJob("alpha", schedule: "quick")
        s.addJob("beta", schedule: "quick")
        s.addJob("gamma", schedule: "quick", image: "images/missing.img")
        s.start()

        // Backups happen on their own, every 3 s.
        XCTAssertTrue(s.wait(timeout: 60) { s.createdRevisions("alpha") >= 5 && s.createdRevisions("beta") >= 5 },
                      "scheduled backups happen; log:\n\(s.logText)")
        XCTAssertTrue(s.logText.contains("alpha: running backup [short] due "))
        XCTAssertTrue(s.logText.contains("alpha: finished backup with return code 0"))
        XCTAssertTrue(s.logText.contains("alpha: Purging unused data"))
        XCTAssertTrue(s.jobLog("alpha").contains("-l \(s.base)/alpha/backy.log backup short"), "runs backy -b JOB -l JOB/backy.log backup TAGS")

        // Old revisions expire (keep 2, and anything younger than 2 × 3 s).
        XCTAssertTrue(s.wait(timeout: 30) { s.revisions("alpha").count < s.createdRevisions("alpha") },
                      "revisions expired: \(s.revisions("alpha").count) of \(s.createdRevisions("alpha"))")
        XCTAssertTrue(s.logText.contains("alpha: Removing revision "), s.logText)
        XCTAssertGreaterThanOrEqual(s.revisions("alpha").count, 2, "keep 2")

        // The missing source fails and backs off 120 s; `jobs` shows it.
        XCTAssertTrue(s.wait(timeout: 30) { s.logText.contains("gamma: retrying in 120 seconds") }, s.logText)
        let row = s.jobsRow("gamma")
        XCTAssertTrue(row.contains("waiting for retry (1 failed)"), row)
        XCTAssertTrue(s.jobLog("gamma").contains("Source is not ready"))

        // `check` is CRITICAL: the failing job never succeeded within its SLA
        // (1.5 × 3 s after it was set up; backy 2.4 called it OK forever).
        var check = E2E.backy(["check", "-c", s.config])
        s.wait(timeout: 30) {
            check = E2E.backy(["check", "-c", s.config])
            return check.code == 2
        }
        XCTAssertEqual(check.code, 2, check.out)
        XCTAssertTrue(check.out.hasPrefix("CRITICAL: 1 jobs not within SLA | jobs=3;;;0 jobs_out_of_sla=1;;;0 oldest_last_backup_age="), check.out)
        XCTAssertTrue(check.out.contains("\ngamma (never backed up; "), check.out)
        let status = try String(contentsOfFile: s.statusFile, encoding: .utf8)
        XCTAssertTrue(status.contains("job: gamma"), status)
        XCTAssertTrue(status.contains("status: waiting for retry"), status)

        // `run` starts the failing job at once: a second failure, backoff 240 s.
        XCTAssertEqual(s.console("run gamma").trimmingCharacters(in: .whitespacesAndNewlines), "Triggered immediate run for gamma")
        XCTAssertTrue(s.wait(timeout: 30) { s.logText.contains("gamma: retrying in 240 seconds") }, s.logText)
        XCTAssertTrue(s.jobsRow("gamma").contains("(2 failed)"))
        XCTAssertEqual(s.console("run nosuchjob").trimmingCharacters(in: .whitespacesAndNewlines), "Unknown job nosuchjob")

        // SIGHUP adds a job without a restart.
        s.addJob("delta", schedule: "quick")
        s.writeConfig()
        s.signal(SIGHUP)
        XCTAssertTrue(s.wait(timeout: 30) { s.revisions("delta").count >= 1 }, "the added job is backed up; log:\n\(s.logText)")
        XCTAssertTrue(s.logText.contains("Reloaded \(s.config): 4 jobs (1 added, 0 changed, 0 removed)"), s.logText)
        XCTAssertTrue(s.console("jobs").contains("4 jobs shown"))

        // Expiry keeps exactly the `keep` newest revisions once all are older
        // than keep × interval: alpha's source goes away, and a run started
        // after its newest revision is 7 s old fails and expires.
        try FileManager.default.moveItem(atPath: s.dir + "/images/alpha.img", toPath: s.dir + "/images/alpha.gone")
        XCTAssertTrue(s.wait(timeout: 30) { s.logText.contains("alpha: retrying in 120 seconds") }, s.logText)
        let made = s.completedRevisions("alpha")
        XCTAssertGreaterThanOrEqual(made.count, 5)
        let newest = try XCTUnwrap(E2E.revisions(s.base + "/alpha").last?["timestamp"] as? String)
        let newestDate = try XCTUnwrap(Self.parseTimestamp(newest), newest)
        XCTAssertTrue(s.wait(timeout: 30) { Date().timeIntervalSince(newestDate) > 7 })
        XCTAssertEqual(s.console("run alpha").trimmingCharacters(in: .whitespacesAndNewlines), "Triggered immediate run for alpha")
        XCTAssertTrue(s.wait(timeout: 30) { s.logText.contains("alpha: retrying in 240 seconds") }, s.logText)
        XCTAssertEqual(s.completedRevisions("alpha"), made, "no backup succeeded meanwhile")
        XCTAssertEqual(s.revisions("alpha"), Array(made.suffix(2)), "exactly the 2 newest revisions are kept")
        for line in s.logText.split(separator: "\n") where line.contains("alpha: Removing revision ") {
            let id = String(line.split(separator: " ").drop { $0 != "revision" }.dropFirst().first ?? "")
            XCTAssertTrue(made.dropLast(2).contains(id), "removed \(id) was one of the older revisions")
        }

        // A clean stop.
        XCTAssertEqual(s.stop(), 0)
        XCTAssertTrue(s.logText.contains("Received signal 15"))
        XCTAssertTrue(s.logText.contains("Scheduler stopped"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: s.base + "/.lock") && isLocked(s.base + "/.lock"))
    }

    /// A `backy` stand-in: backups and purges exit 0 without doing anything, or
    /// (with the file `slow` in the job's parent) a backup sleeps in a child process.
    func fakeBackyCommand(in dir: String) -> String {
        let path = dir + "/fake-backy"
        let script = """
            #!/bin/sh
            # -b DIR -l LOG COMMAND [TAGS]
            if [ "$5" = backup ] && [ -e "$2/../../slow" ]; then
                sleep 60 &
                echo $! > "$2/../../child.pid"
                wait
            fi
            exit 0

            """
        try! script.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    func testRunsThatLeaveNoRevisionBackOffAndStopSignalsChildren() throws {
        let s = SchedulerHarness(self, schedules: "  quick:\n    short: {interval: 2s, keep: 2}")
        s.env["BACKY_CMD"] = fakeBackyCommand(in: s.dir)
        s.addJob("fake", schedule: "quick")
        s.start()
        // Exit code 0 but no revision: counted as a failure, no hot loop.
        XCTAssertTrue(s.wait(timeout: 30) { s.logText.contains("fake: retrying in 120 seconds") }, s.logText)
        XCTAssertTrue(s.logText.contains("fake: backup exited 0 but left no new complete revision tagged [short]; counting it as failed"))
        // Not a wait for a state: a window in which a second run must not
        // start (the 2 s schedule would start one).
        XCTAssertFalse(s.wait(timeout: 3) { s.logText.components(separatedBy: "fake: running backup").count - 1 > 1 },
                       "one run only, then backoff")

        // A running child is signalled and waited for on SIGTERM.
        _ = FileManager.default.createFile(atPath: s.dir + "/slow", contents: nil)
        XCTAssertTrue(s.console("run fake").contains("Triggered immediate run for fake"))
        // The shell creates child.pid before it writes the pid: wait for the pid.
        func childPID() -> pid_t? {
            (try? String(contentsOfFile: s.dir + "/child.pid", encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        XCTAssertTrue(s.wait(timeout: 30) { childPID() != nil })
        let child = try XCTUnwrap(childPID())
        XCTAssertEqual(Glibc.kill(child, 0), 0, "the backup's child runs")
        XCTAssertTrue(s.jobsRow("fake").contains("running"))
        let started = Date()
        XCTAssertEqual(s.stop(timeout: 30), 0)
        XCTAssertLessThan(Date().timeIntervalSince(started), 20, "did not wait for the 60 s sleep")
        XCTAssertTrue(s.wait(timeout: 5) { Glibc.kill(child, 0) != 0 }, "the whole process group was terminated")
        XCTAssertTrue(s.logText.contains("fake: backup backup was killed by signal 15") || s.logText.contains("fake: finished backup with return code 143"), s.logText)
    }

    func testAtMostWorkerLimitRunsAtOnce() throws {
        let s = SchedulerHarness(self, schedules: "  slow:\n    daily: {interval: 1d, keep: 2}")
        let cmd = s.dir + "/counting-backy"
        try """
            #!/bin/sh
            # Records how many backups run at the same time.
            if [ "$5" = backup ]; then
                touch "$2/../../active.$$"
                ls "$2/../../" | grep -c '^active\\.' >> "$2/../../concurrency"
                sleep 1
                rm -f "$2/../../active.$$"
                echo "$1 $2" >> "$2/../../ran"
            fi
            exit 0

            """.write(toFile: cmd, atomically: true, encoding: .utf8)
        chmod(cmd, 0o755)
        s.env["BACKY_CMD"] = cmd
        for name in ["j1", "j2", "j3", "j4", "j5"] { s.addJob(name, schedule: "slow") }
        s.start()
        let answer = s.console("runall")
        XCTAssertEqual(answer.components(separatedBy: "Triggered immediate run for").count - 1, 5, answer)
        XCTAssertTrue(s.wait(timeout: 30) {
            ((try? String(contentsOfFile: s.dir + "/ran", encoding: .utf8)) ?? "").split(separator: "\n").count == 5
        }, s.logText)
        let counts = try String(contentsOfFile: s.dir + "/concurrency", encoding: .utf8).split(separator: "\n").compactMap { Int($0) }
        XCTAssertEqual(counts.count, 5)
        XCTAssertEqual(counts.max(), 2, "worker-limit 2: \(counts)")
        XCTAssertTrue(s.logText.contains("status queued for execution"))
        XCTAssertEqual(s.stop(), 0)
    }

    func testConfigErrorsDaemonLockAndCheckExitCodes() throws {
        let s = SchedulerHarness(self, schedules: Self.quick)
        s.addJob("alpha", schedule: "nonexistent")
        s.writeConfig()
        var r = E2E.backy(["scheduler", "-c", s.config])
        XCTAssertEqual(r.code, 1)
        XCTAssertEqual(r.stderr, "Error: \(s.config): line 13: jobs.alpha.schedule: unknown schedule \"nonexistent\" (defined: quick)\n")
        r = E2E.backy(["scheduler", "-c", s.dir + "/nope.conf"])
        XCTAssertEqual(r.code, 1)
        XCTAssertEqual(r.stderr, "Error: configuration file \(s.dir)/nope.conf does not exist\n")
        r = E2E.backy(["check", "-c", s.dir + "/nope.conf"])
        XCTAssertEqual(r.code, 3, "a missing configuration is UNKNOWN for Nagios")

        // No status file yet: UNKNOWN.
        r = E2E.backy(["check", "-c", s.config])
        XCTAssertEqual(r.code, 3)
        XCTAssertEqual(r.out, "UNKNOWN: No status file found at \(s.statusFile)\n")
        // A stale one: CRITICAL.
        try "[]\n".write(toFile: s.statusFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-600)], ofItemAtPath: s.statusFile)
        r = E2E.backy(["check", "-c", s.config])
        XCTAssertEqual(r.code, 2)
        XCTAssertEqual(r.out, "CRITICAL: Status file is older than 5 minutes\n")

        // The daemon lock is held: exit 69, nothing created.
        s.jobsYAML = []
        s.addJob("alpha", schedule: "quick")
        s.writeConfig()
        let fd = open(s.base + "/.lock", O_RDWR | O_CREAT, 0o644)
        XCTAssertEqual(flock(fd, LOCK_EX), 0)
        r = E2E.backy(["scheduler", "-c", s.config])
        XCTAssertEqual(r.code, 69)
        XCTAssertTrue(r.stderr.contains("failed to acquire lock \(s.base)/.lock"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: s.base + "/alpha"), "job directories are created after the lock is taken")
        close(fd)

        // A missing base-dir is a configuration error.
        try FileManager.default.removeItem(atPath: s.base)
        r = E2E.backy(["scheduler", "-c", s.config])
        XCTAssertEqual(r.code, 1)
        XCTAssertEqual(r.stderr, "Error: \(s.config): global.base-dir: \(s.base) does not exist (create it first)\n")
    }

    /// A revision timestamp as `status --json` prints it
    /// (`2026-11-25T10:22:51.123456Z`).
    static func parseTimestamp(_ s: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        guard s.hasSuffix("Z"), let whole = f.date(from: String(s.prefix(19))) else { return nil }
        let fraction = Double("0" + s.dropFirst(19).dropLast()) ?? 0
        return whole.addingTimeInterval(fraction)
    }

    func isLocked(_ path: String) -> Bool {
        let fd = open(path, O_RDWR)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0
    }
}
