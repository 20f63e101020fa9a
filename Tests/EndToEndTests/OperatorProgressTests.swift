// OperatorProgressTests: progress end to end (issue 16, point 1): under a
// pseudo-terminal (script -qec) backup, restore, verify and upgrade show one
// live line that is cleared at the end; in a pipe a log line every 10 %;
// --progress/--no-progress override, -q leaves only errors; -v logs debug
// lines (phases, source decisions, locks); the scheduler's runs log progress
// lines to the job's log.
import Foundation
import XCTest

final class OperatorProgressTests: XCTestCase {
    static let esc = "\u{1B}[K"

    /// The live progress lines of a terminal transcript, and whether the
    /// last one was cleared (erased before the end of the output).
    func liveLines(_ transcript: String, phase: String) -> (lines: [String], cleared: Bool) {
        let parts = transcript.components(separatedBy: "\r" + OperatorProgressTests.esc)
        let lines = parts.dropFirst().map { $0.components(separatedBy: "\r").first ?? $0 }.filter { $0.hasPrefix(phase + ": ") }
        // After the last live line another erase must follow (the clear),
        // so no part after it starts with a progress line and stays.
        guard let lastIndex = parts.lastIndex(where: { $0.hasPrefix(phase + ": ") }) else { return (lines, false) }
        return (lines, lastIndex < parts.count - 1)
    }

    func testLiveLineOnATerminalAndLogLinesInAPipe() throws {
        let seed = Operator.seed(1611)
        let t = Operator.job(self, mib: 40, seed: seed)
        let b = E2E.binary
        // A terminal: one live line per phase, redrawn, then cleared.
        var tty = try Operator.underTerminal("'\(b)' -b '\(t.job)' backup daily")
        XCTAssertEqual(tty.code, 0, tty.stderr)
        var text = String(decoding: tty.stdout, as: UTF8.self)
        var backup = liveLines(text, phase: "backup")
        XCTAssertFalse(backup.lines.isEmpty, text)
        XCTAssertTrue(backup.cleared, "the live line is cleared at the end: \(text.debugDescription)")
        let first = try XCTUnwrap(backup.lines.first)
        XCTAssertNotNil(first.range(of: #"^backup: [0-9.]+ (Bytes|kiB|MiB) of 40\.00 MiB \(\d+ %\), [0-9.]+ (Bytes|kiB|MiB|GiB)/s"#, options: .regularExpression), first)
        XCTAssertFalse(liveLines(text, phase: "verify").lines.isEmpty, "the verification has its own line: \(text.debugDescription)")
        XCTAssertTrue(text.contains("Backup "), "log lines still appear")
        XCTAssertFalse(text.contains("backup: 4.00 MiB of 40.00 MiB (10 %)\r\n"), "no log-style progress lines on a terminal")

        // A pipe: log lines at each 10 %, no escape sequences.
        let pipe = E2E.backy(["-b", t.job, "backup", "daily"])
        XCTAssertEqual(pipe.code, 0)
        XCTAssertFalse(pipe.stderr.contains("\u{1B}"), pipe.stderr)
        XCTAssertFalse(pipe.stderr.contains("\r"), pipe.stderr)
        let steps = pipe.stderr.split(separator: "\n").filter { $0.hasPrefix("backup: ") }
        XCTAssertEqual(steps.count, 10, "one line per 10 % of 10 chunks: \(pipe.stderr)")
        XCTAssertTrue(steps.last?.hasPrefix("backup: 40.00 MiB of 40.00 MiB (100 %)") ?? false, pipe.stderr)
        XCTAssertEqual(pipe.stderr.split(separator: "\n").filter { $0.hasPrefix("verify: ") }.count, 10, pipe.stderr)
        // --no-progress: none; --progress: the live line even in a pipe; -q: nothing at all.
        let none = E2E.backy(["--no-progress", "-b", t.job, "backup", "daily"])
        XCTAssertFalse(none.stderr.contains("backup: "), none.stderr)
        XCTAssertTrue(none.stderr.contains("New revision"), none.stderr)
        let forced = E2E.backy(["-b", t.job, "backup", "--progress", "daily"])
        XCTAssertTrue(forced.stderr.contains("\r" + OperatorProgressTests.esc + "backup: "), forced.stderr.debugDescription)
        let quiet = E2E.backy(["-q", "-b", t.job, "backup", "daily"])
        XCTAssertEqual(quiet.code, 0)
        XCTAssertEqual(quiet.stderr, "")
        tty = try Operator.underTerminal("'\(b)' -q -b '\(t.job)' backup daily")
        text = String(decoding: tty.stdout, as: UTF8.self)
        XCTAssertFalse(text.contains("backup: "), text.debugDescription)
        XCTAssertFalse(text.contains("New revision"), text.debugDescription)

        // Restore and verify on a terminal; the restored image is right.
        let target = t.dir + "/restored.img"
        tty = try Operator.underTerminal("'\(b)' -b '\(t.job)' restore -r 0 '\(target)'")
        XCTAssertEqual(tty.code, 0)
        text = String(decoding: tty.stdout, as: UTF8.self)
        backup = liveLines(text, phase: "restore")
        XCTAssertFalse(backup.lines.isEmpty, text.debugDescription)
        XCTAssertTrue(backup.cleared, text.debugDescription)
        XCTAssertEqual(E2E.sha256(file: target), E2E.sha256(file: t.image))
        tty = try Operator.underTerminal("'\(b)' -b '\(t.job)' verify -r 0")
        XCTAssertEqual(tty.code, 0)
        text = String(decoding: tty.stdout, as: UTF8.self)
        let verify = liveLines(text, phase: "verify " + E2E.revisionIDs(t.job).last!)
        XCTAssertFalse(verify.lines.isEmpty, text.debugDescription)
        XCTAssertTrue(verify.cleared, text.debugDescription)
        // Restore to stdout in a pipe: the image on stdout, progress on stderr only.
        let out = E2E.backy(["-b", t.job, "restore", "-r", "0", "-"])
        XCTAssertEqual(E2E.sha256(out.stdout), E2E.sha256(file: t.image))
        XCTAssertTrue(out.stderr.contains("restore: 40.00 MiB of 40.00 MiB (100 %)"), out.stderr)
    }

    func testUpgradeShowsProgress() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fixtures/legacy/job-chunked").path
        guard FileManager.default.fileExists(atPath: fixture) else { return XCTFail("fixture \(fixture) missing") }
        let dir = E2E.tempDir(self, "upg")
        let job = dir + "/job"
        XCTAssertEqual(E2E.run("/bin/cp", ["-a", fixture, job]).code, 0)
        let r = E2E.backy(["-b", job, "upgrade"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("upgrade ") && $0.contains(" %)") }
        XCTAssertFalse(lines.isEmpty, r.stderr)
        XCTAssertTrue(lines.contains { $0.contains("(100 %)") }, r.stderr)
    }

    func testVerboseLogsDebugLines() throws {
        let t = Operator.job(self, mib: 5, seed: Operator.seed(1612))
        let log = t.dir + "/verbose.log"
        XCTAssertEqual(E2E.backy(["-v", "-l", log, "-b", t.job, "backup", "daily"]).code, 0)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        let debug = text.split(separator: "\n").filter { $0.contains(" DEBUG ") }
        XCTAssertTrue(debug.contains { $0.contains("Holding") && $0.contains(".backup") }, "a lock: \(text)")
        XCTAssertTrue(debug.contains { $0.contains("Phase: verifying") }, "a phase: \(text)")
        XCTAssertTrue(debug.contains { $0.contains("Source decision: a regular file") }, "a source decision: \(text)")
        let plain = t.dir + "/plain.log"
        XCTAssertEqual(E2E.backy(["-l", plain, "-b", t.job, "backup", "daily"]).code, 0)
        XCTAssertFalse(try String(contentsOfFile: plain, encoding: .utf8).contains(" DEBUG "))
    }

    func testScheduledRunsLogProgress() throws {
        let s = SchedulerHarness(self, schedules: "  daily: {daily: {interval: 1d, keep: 3}}")
        s.addJob("big", schedule: "daily", size: 20 << 20)
        s.start()
        XCTAssertTrue(s.console("run big").contains("Triggered"))
        XCTAssertTrue(s.wait(timeout: 60) { s.logText.contains("big: finished backup with return code 0") }, s.logText)
        let lines = s.jobLog("big").split(separator: "\n")
        let progress = lines.filter { $0.contains(" INFO backup: ") }
        XCTAssertEqual(progress.count, 5, "5 chunks: a line at each 20 %: \(s.jobLog("big"))")
        XCTAssertTrue(progress.last?.contains("backup: 20.00 MiB of 20.00 MiB (100 %)") ?? false)
        XCTAssertFalse(s.jobLog("big").contains("\u{1B}"))
        XCTAssertEqual(s.stop(), 0)
    }
}
