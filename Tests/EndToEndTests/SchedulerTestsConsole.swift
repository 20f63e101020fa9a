// SchedulerTestsConsole: the scheduler's telnet console through real TCP
// clients — a socket client (several at once, telnet negotiation bytes), `nc`
// and `telnet` — and `reload` from the console.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class SchedulerConsoleEndToEndTests: XCTestCase {
    static let daily = "  slow:\n    daily: {interval: 1d, keep: 7}\n    weekly: {interval: 1w, keep: 4}"

    func testConsoleThroughTCPClients() throws {
        let s = SchedulerHarness(self, schedules: Self.daily)
        s.addJob("test01", schedule: "slow")
        s.addJob("test02", schedule: "slow")
        s.start()

        let a = try ConsoleClient(port: s.port)
        let b = try ConsoleClient(port: s.port)
        let c = try ConsoleClient(port: s.port)

        let jobs = try a.ask("jobs")
        XCTAssertTrue(jobs.contains("| Job    | SLA | Status               | Last Backup (UTC) | Last Tags | Last Dur | Next Backup (UTC)   | Next Tags    |"), jobs)
        XCTAssertTrue(jobs.contains("| test01 | OK  | waiting for deadline | -                 | -         |        - |"), jobs)
        XCTAssertTrue(jobs.hasSuffix("2 jobs shown\n"), jobs)
        XCTAssertTrue(try b.ask("jobs 02").contains("1 jobs shown"))
        XCTAssertEqual(try b.ask("jobs a b"), "Usage: jobs [--json] [REGEX]\n")
        XCTAssertEqual(try c.ask("status"), """
            +----------------------+---+
            | Status               | # |
            +----------------------+---+
            | waiting for deadline | 2 |
            +----------------------+---+

            """)
        XCTAssertEqual(try c.ask("bogus"), "bogus: command not found. Type help for the list of commands.\n")
        XCTAssertEqual(try c.ask("run nope"), "Unknown job nope\n")
        XCTAssertTrue(try a.ask("help").hasPrefix("Available commands:\n"))

        // Telnet negotiation (IAC DO ECHO, IAC WILL NAWS, a subnegotiation) is refused
        // harmlessly and the command after it still works.
        b.send([255, 253, 1, 255, 251, 31, 255, 250, 31, 0, 80, 0, 24, 255, 240] + Array("jobs test01\r\n".utf8))
        let raw = try b.readRawUntil("backy> ")
        XCTAssertEqual(Array(raw.prefix(6)), [255, 252, 1, 255, 254, 31], "DO ECHO → WONT ECHO, WILL NAWS → DONT NAWS")
        XCTAssertTrue(String(decoding: raw.dropFirst(6), as: UTF8.self).contains("1 jobs shown"))

        // `run` triggers the job at once; it backs up.
        XCTAssertEqual(try a.ask("run test01"), "Triggered immediate run for test01\n")
        XCTAssertTrue(s.wait(timeout: 30) { s.revisions("test01").count == 1 }, s.logText)
        XCTAssertTrue(s.wait(timeout: 10) { s.jobsRow("test01").contains("daily,weekly") })

        // quit closes only that connection.
        c.send(Array("quit\r\n".utf8))
        XCTAssertEqual(c.readToEnd(), "Goodbye.\r\n")
        XCTAssertTrue(try a.ask("jobs").contains("2 jobs shown"))

        // `reload` from the console adds a job.
        s.addJob("test03", schedule: "slow")
        s.writeConfig()
        XCTAssertEqual(try a.ask("reload"), "Reloaded \(s.config): 3 jobs (1 added, 0 changed, 0 removed)\n")
        XCTAssertTrue(try a.ask("jobs").contains("| test03 |"))
        // Removing one job and changing another take effect too.
        s.jobsYAML = []
        s.schedulesYAML = Self.daily + "\n  hourly:\n    hourly: {interval: 1h, keep: 3}"
        s.addJob("test01", schedule: "hourly", image: "images/test01.img")
        s.addJob("test03", schedule: "slow", image: "images/test03.img")
        s.writeConfig()
        XCTAssertEqual(try a.ask("reload"), "Reloaded \(s.config): 2 jobs (0 added, 1 changed, 1 removed)\n")
        let after = try a.ask("jobs")
        XCTAssertFalse(after.contains("| test02 |"), after)
        XCTAssertTrue(after.contains("2 jobs shown"), after)
        // test01 now has an hourly tag that it missed: it is caught up right away.
        XCTAssertTrue(s.wait(timeout: 30) { s.jobsRow("test01").contains("| hourly ") }, s.jobsRow("test01"))
        XCTAssertEqual(try a.ask("run test02"), "Unknown job test02\n")
        // A broken configuration is refused, the running one stays.
        try "jobs: [\n".write(toFile: s.config, atomically: true, encoding: .utf8)
        XCTAssertTrue(try a.ask("reload").hasPrefix("Reload failed, keeping the running configuration: "))
        XCTAssertTrue(try a.ask("jobs").contains("2 jobs shown"))
        s.writeConfig()

        XCTAssertEqual(s.stop(), 0)
    }

    func testConsoleWithNetcatAndTelnet() throws {
        let nc = try E2E.tool("nc"), telnet = try E2E.tool("telnet")
        let s = SchedulerHarness(self, schedules: Self.daily)
        s.addJob("test01", schedule: "slow")
        s.start()
        let r = E2E.run("/bin/sh", ["-c", "printf 'jobs\\nstatus\\n' | \(nc) -N 127.0.0.1 \(s.port)"], timeout: 30)
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.out.hasPrefix("backy "), r.out)
        XCTAssertTrue(r.out.contains("1 jobs shown\r\n"), r.out)
        XCTAssertTrue(r.out.contains("| waiting for deadline | 1 |"), r.out)

        // telnet, typed to: each line goes once the answer to the one before
        // (and the next prompt) is there.
        let t = try Interactive(telnet, ["127.0.0.1", String(s.port)], test: self)
        XCTAssertTrue(t.waitFor("backy> "), t.output)
        t.type("jobs test")
        XCTAssertTrue(t.waitFor("1 jobs shown"), t.output)
        XCTAssertTrue(t.waitFor("backy> ", count: 2), t.output)
        t.type("run test01; quit")
        XCTAssertTrue(t.waitFor("Goodbye."), t.output)
        XCTAssertTrue(t.output.contains("Triggered immediate run for test01"), t.output)
        XCTAssertEqual(t.finish(), 0, "telnet ends when the console closes the connection: \(t.output)")
        XCTAssertEqual(s.stop(), 0)
    }
}
