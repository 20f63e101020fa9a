// ConsoleTests.swift — the telnet console's commands (README.md, "The console"), its line
// splitting, telnet negotiation and line assembly, against a fake daemon.

import Foundation
import XCTest

@testable import Scheduler

// @unchecked Sendable: the tests call ConsoleCommands.execute with it directly, on the test's own thread (no server, no other thread).
final class FakeBackend: ConsoleBackend, @unchecked Sendable {
    var entries: [JobStatusEntry] = [
        JobStatusEntry(job: "test02", sla: "TOO OLD", status: "waiting for retry", lastTime: "2015-08-30 07:06:47 UTC",
                       lastTags: "daily", lastDuration: "5.0 s", nextTime: "2015-09-01 07:08:47 UTC", nextTags: "daily",
                       slaOverdue: 100, failures: 1),
        JobStatusEntry(job: "test01", sla: "OK", status: "waiting for deadline", lastTime: "2015-11-05 11:56:10 UTC",
                       lastTags: "daily", lastDuration: "50.7 s", nextTime: "2015-11-06 11:56:10 UTC", nextTags: "daily,weekly"),
        JobStatusEntry(job: "other", sla: "OK", status: "running"),
    ]
    var triggered: [String] = []
    var reloads = 0

    func statusEntries(now: Date) -> [JobStatusEntry] { entries.sorted { $0.job < $1.job } }
    func trigger(_ name: String) -> String {
        guard entries.contains(where: { $0.job == name }) else { return "Unknown job \(name)" }
        triggered.append(name)
        return "Triggered immediate run for \(name)"
    }
    func triggerAll() -> [String] { entries.map(\.job).sorted().map(trigger) }
    func reload() -> String { reloads += 1; return "Reloaded" }
}

final class SchedulerConsoleTests: XCTestCase {
    func run(_ line: String, _ backend: FakeBackend = FakeBackend()) -> ConsoleCommands.Reply {
        ConsoleCommands.execute(line, backend: backend)
    }

    func testJobsTable() {
        XCTAssertEqual(run("jobs test0").lines, [
            "+--------+---------+------------------------------+---------------------+-----------+----------+---------------------+--------------+",
            "| Job    | SLA     | Status                       | Last Backup (UTC)   | Last Tags | Last Dur | Next Backup (UTC)   | Next Tags    |",
            "+--------+---------+------------------------------+---------------------+-----------+----------+---------------------+--------------+",
            "| test01 | OK      | waiting for deadline         | 2015-11-05 11:56:10 | daily     |   50.7 s | 2015-11-06 11:56:10 | daily,weekly |",
            "| test02 | TOO OLD | waiting for retry (1 failed) | 2015-08-30 07:06:47 | daily     |    5.0 s | 2015-09-01 07:08:47 | daily        |",
            "+--------+---------+------------------------------+---------------------+-----------+----------+---------------------+--------------+",
            "2 jobs shown",
        ])
        XCTAssertEqual(run("jobs").lines.last, "3 jobs shown")
        XCTAssertEqual(run("jobs ^t.*1$").lines.last, "1 jobs shown", "REGEX is a search on the job name")
        XCTAssertEqual(run("jobs nomatch").lines.last, "0 jobs shown")
        XCTAssertEqual(run("jobs a b").lines, ["Usage: jobs [--json] [REGEX]"])
        XCTAssertEqual(run("jobs [").lines, ["Invalid regular expression: [ (unterminated character set)"])
    }

    func testStatusCountsJobsPerStatus() {
        XCTAssertEqual(run("status").lines, [
            "+----------------------+---+",
            "| Status               | # |",
            "+----------------------+---+",
            "| running              | 1 |",
            "| waiting for deadline | 1 |",
            "| waiting for retry    | 1 |",
            "+----------------------+---+",
        ])
    }

    func testRunRunallReloadAndUnknownInput() {
        let b = FakeBackend()
        XCTAssertEqual(run("run test01", b).lines, ["Triggered immediate run for test01"])
        XCTAssertEqual(run("run nope", b).lines, ["Unknown job nope"])
        XCTAssertEqual(run("run", b).lines, ["Usage: run JOB"])
        XCTAssertEqual(run("runall", b).lines.count, 3)
        XCTAssertEqual(b.triggered, ["test01", "other", "test01", "test02"])
        XCTAssertEqual(run("reload", b).lines, ["Reloaded"])
        XCTAssertEqual(b.reloads, 1)
        XCTAssertEqual(run("frobnicate now", b).lines, ["frobnicate: command not found. Type help for the list of commands."])
        XCTAssertEqual(run("", b), ConsoleCommands.Reply(lines: [], quit: false))
        XCTAssertEqual(run("run 'unterminated", b).lines, ["Syntax error: unterminated quote"])
        XCTAssertEqual(run("help", b).lines.first, "Available commands:")
        XCTAssertEqual(run("help run", b).lines.first, "run JOB")
        XCTAssertEqual(run("help nope", b).lines, ["No help for nope: no such command."])
    }

    func testSeveralCommandsPerLineAndQuit() {
        let b = FakeBackend()
        let r = run("run test01; run 'test02' ; quit; run other", b)
        XCTAssertEqual(r.lines, ["Triggered immediate run for test01", "Triggered immediate run for test02", "Goodbye."])
        XCTAssertTrue(r.quit)
        XCTAssertEqual(b.triggered, ["test01", "test02"], "nothing after quit runs")
    }

    func testShellSplitting() throws {
        XCTAssertEqual(try ConsoleCommands.split("jobs  'a b'\t\"c\\\"d\" e\\ f;status;;").get(),
                       [["jobs", "a b", "c\"d", "e f"], ["status"], [], []])
        XCTAssertEqual(try ConsoleCommands.split("").get(), [[]])
    }

    func testTelnetNegotiationIsRefusedHarmlessly() {
        var t = TelnetDecoder()
        // IAC DO ECHO, IAC WILL NAWS, IAC SB NAWS 0 80 0 24 IAC SE, data, IAC IAC, IAC NOP.
        let out = t.feed([255, 253, 1, 255, 251, 31, 255, 250, 31, 0, 80, 0, 24, 255, 240] + Array("jobs".utf8) + [255, 255, 255, 241])
        XCTAssertEqual(out.reply, [255, 252, 1, 255, 254, 31])
        XCTAssertEqual(out.data, Array("jobs".utf8) + [255])
        // Split across reads.
        var u = TelnetDecoder()
        XCTAssertEqual(u.feed([255]).data, [])
        XCTAssertEqual(u.feed([253]).reply, [])
        XCTAssertEqual(u.feed([3, 65]), TelnetDecoder.Output(data: [65], reply: [255, 252, 3], interrupt: false))
        // IAC IP: the client's Ctrl-C.
        var v = TelnetDecoder()
        let ip = v.feed(Array("ab".utf8) + [255, 244] + Array("c".utf8))
        XCTAssertTrue(ip.interrupt)
        XCTAssertEqual(ip.data, [97, 98, 3, 99])
    }

    func testLineAssembly() {
        var l = LineAssembler()
        XCTAssertEqual(l.feed(Array("jobs\r\nstatus\r\0run x\nhelp\r".utf8)),
                       [.line("jobs"), .line("status"), .line("run x"), .line("help")])
        XCTAssertEqual(l.feed(Array("\nquit".utf8)), [], "LF after CR is part of the same line end")
        XCTAssertEqual(l.rest(), "quit")
        XCTAssertEqual(l.feed(Array("jpbs".utf8) + [8, 8, 127] + Array("obs\n".utf8)), [.line("jobs")])
        XCTAssertEqual(l.feed(Array("half".utf8) + [3] + Array("run a\n".utf8)), [.interrupt, .line("run a")])
        XCTAssertEqual(l.feed([4]), [.endOfInput])
        XCTAssertEqual(l.feed([UInt8](repeating: 65, count: LineAssembler.maxLine + 10) + [10] + Array("ok\n".utf8)), [.tooLong, .line("ok")])
    }
}
