// ConsoleLimitsTests: the scheduler's console under careless or hostile
// clients, through real sockets, `nc` and `nc -U`: a connection cap with a
// message to refused clients and one log line per burst, held connections
// that cannot exhaust the scheduler's descriptors (backups and the status
// file go on), a catastrophic `jobs` regex and clients that never read
// their answers cannot stall other clients, and the console on a Unix
// socket (mode 0660, a group) instead of telnet.
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class ConsoleLimitsTests: XCTestCase {
    static let daily = "  slow:\n    daily: {interval: 1d, keep: 7}"

    /// A TCP connection to the console that reads nothing by itself.
    static func rawConnect(_ port: Int, rcvbuf: Int32? = nil) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var b = rcvbuf { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &b, 4) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
        if !ok { close(fd); return -1 }
        return fd
    }

    /// Reads until EOF or `timeout`.
    static func readAll(_ fd: Int32, timeout: Int = 5) -> String {
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Times one command on a fresh connection (connect, banner, answer).
    static func timed(_ port: Int, _ line: String) throws -> (String, Double) {
        let t0 = Date()
        let c = try ConsoleClient(port: port, timeout: 10)
        let a = try c.ask(line)
        return (a, Date().timeIntervalSince(t0))
    }

    func testConnectionCapRefusesWithAMessageAndOneLogLine() throws {
        let s = SchedulerHarness(self, schedules: Self.daily, extraGlobal: "  console-max-connections: 4")
        s.addJob("test01", schedule: "slow")
        s.start()
        // start() probed the console once; wait until that slot is free again.
        XCTAssertTrue(s.wait(timeout: 5) { (try? ConsoleClient(port: s.port, timeout: 2)) != nil })
        var held: [ConsoleClient] = []
        for _ in 0..<4 { held.append(try ConsoleClient(port: s.port)) }
        for k in 0..<20 {
            let fd = Self.rawConnect(s.port)
            XCTAssertGreaterThanOrEqual(fd, 0)
            XCTAssertEqual(Self.readAll(fd), "Too many connections (at most 4); try again later.\r\n", "refused client \(k)")
            close(fd)
        }
        XCTAssertTrue(try held[0].ask("status").contains("waiting for deadline"), "held clients are still served")
        held.removeLast()
        XCTAssertTrue(s.wait(timeout: 5) { (try? ConsoleClient(port: s.port, timeout: 2)) != nil }, "a freed slot is taken")
        let refusals = s.logText.components(separatedBy: "\n").filter { $0.contains("console: refused a connection") }
        XCTAssertEqual(refusals.count, 1, s.logText)
        XCTAssertTrue(s.wait(timeout: 10) { s.logText.contains("console: refused 19 more connections") }, s.logText)
        XCTAssertEqual(s.stop(), 0)
    }

    /// 300 held connections: the scheduler keeps its descriptors, writes its
    /// status file and runs a backup; after 10 s idle a held connection
    /// gives its slot to an operator.
    func testHeldConnectionsCannotExhaustTheScheduler() throws {
        let s = SchedulerHarness(self, schedules: Self.daily)
        s.addJob("test01", schedule: "slow")
        s.start()
        let pid = try XCTUnwrap(s.process?.processIdentifier)
        var fds: [Int32] = []
        for _ in 0..<300 {
            let fd = Self.rawConnect(s.port)
            if fd >= 0 { fds.append(fd) }
        }
        defer { for fd in fds { close(fd) } }
        sleep(1)
        let open = ServerTest.fdCount(pid)
        print("scheduler descriptors with 300 held console connections: \(open)")
        XCTAssertLessThan(open, 100)
        let mtime = { (try? FileManager.default.attributesOfItem(atPath: s.statusFile)[.modificationDate] as? Date) ?? .distantPast }
        let before = mtime()
        XCTAssertTrue(s.wait(timeout: 5) { mtime() > before }, "the status file is still rewritten")
        // The held connections are idle: after 10 s an operator gets a slot.
        sleep(10)
        let (answer, secs) = try Self.timed(s.port, "run test01")
        XCTAssertEqual(answer, "Triggered immediate run for test01\n")
        XCTAssertLessThan(secs, TestSlack.scaled(1.0))
        XCTAssertTrue(s.wait(timeout: 30) { s.revisions("test01").count == 1 }, s.logText)
        // The run counts as a success: a last backup, no failure.
        XCTAssertTrue(s.wait(timeout: 10) {
            let cols = s.jobsRow("test01").split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            return cols.count > 4 && cols[2] == "waiting for deadline" && cols[3] != "-"
        }, s.jobsRow("test01"))
        XCTAssertFalse(s.logText.contains("counting it as failed"), s.logText)
        XCTAssertEqual(s.stop(), 0)
    }

    /// `jobs (a+)+$` backtracks catastrophically in a backtracking engine;
    /// here it is answered at once and nobody waits. Ordinary patterns work
    /// as in backy 2.4.
    func testCatastrophicRegexDoesNotStallOthers() throws {
        let s = SchedulerHarness(self, schedules: Self.daily)
        let evil = String(repeating: "a", count: 34) + "!"
        s.addJob(evil, schedule: "slow")
        s.addJob("test01", schedule: "slow")
        s.addJob("test02", schedule: "slow")
        s.start()
        let a = try ConsoleClient(port: s.port)
        a.send(Array("jobs (a+)+$\r\n".utf8))
        let (status, secs) = try Self.timed(s.port, "status")
        XCTAssertTrue(status.contains("| waiting for deadline | 3 |"), status)
        XCTAssertLessThan(secs, TestSlack.scaled(1.0), "another client waited")
        XCTAssertEqual(try a.readUntil("backy> ").replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n").suffix(2),
                       ["0 jobs shown", ""])
        XCTAssertTrue(try a.ask("jobs (a+)+!$").contains("1 jobs shown"))
        XCTAssertTrue(try a.ask("jobs ^test0[12]$").contains("2 jobs shown"))
        XCTAssertTrue(try a.ask("jobs 02").contains("| test02 |"))
        XCTAssertTrue(try a.ask("jobs '(?i)TEST01|^a{30,}'").contains("2 jobs shown"))
        XCTAssertEqual(try a.ask("jobs '('"), "Invalid regular expression: ( (missing ), unterminated subpattern)\n")
        XCTAssertEqual(try a.ask("jobs '(t)\\1'"), "Invalid regular expression: (t)\\1 (backreferences are not supported)\n")
        XCTAssertEqual(s.stop(), 0)
    }

    /// 20 clients send thousands of commands and never read the answers:
    /// another client is answered within a second, during and after.
    func testClientsThatDoNotReadCannotStallTheConsole() throws {
        let s = SchedulerHarness(self, schedules: Self.daily)
        for k in 1...20 { s.addJob(String(format: "vm%02d", k), schedule: "slow") }
        s.start()
        let flood = Array(String(repeating: "jobs\r\n", count: 3000).utf8)
        var fds: [Int32] = []
        for _ in 0..<20 {
            let fd = Self.rawConnect(s.port, rcvbuf: 4096)
            XCTAssertGreaterThanOrEqual(fd, 0)
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            _ = flood.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            fds.append(fd)
        }
        for k in 0..<5 {
            let (answer, secs) = try Self.timed(s.port, "status")
            XCTAssertTrue(answer.contains("| waiting for deadline | 20 |"), answer)
            XCTAssertLessThan(secs, TestSlack.scaled(1.0), "status \(k) during the flood")
        }
        for fd in fds { close(fd) }
        for k in 0..<5 {
            let (answer, secs) = try Self.timed(s.port, "jobs vm0[1-3]")
            XCTAssertTrue(answer.contains("3 jobs shown"), answer)
            XCTAssertLessThan(secs, TestSlack.scaled(1.0), "jobs \(k) after the flood")
        }
        XCTAssertEqual(s.stop(), 0)
    }

    /// The console on a Unix socket only (telnet-addrs empty): mode 0660,
    /// the configured group, `nc -U` works, TCP does not answer.
    func testConsoleOnAUnixSocketInsteadOfTelnet() throws {
        let nc = try ServerTest.tool("nc")
        let dir = E2E.tempDir(self, "console-unix")
        chmod(dir, 0o755)
        try FileManager.default.createDirectory(atPath: dir + "/base", withIntermediateDirectories: true)
        E2E.write(dir + "/test01.img", E2E.randomBytes(1 << 20, seed: ServerTest.seed + 20), at: 0)
        let sock = dir + "/console.sock"
        let port = E2E.freePort()
        try """
            global:
              base-dir: base
              telnet-addrs: ""
              telnet-port: \(port)
              console-socket: console.sock
              console-socket-group: nogroup
            schedules:
            \(Self.daily)
            jobs:
              test01: {schedule: slow, source: {type: file, filename: test01.img}}

            """.write(toFile: dir + "/backy.conf", atomically: true, encoding: .utf8)
        let s = try BackyServer(["-l", dir + "/scheduler.log", "scheduler", "-c", dir + "/backy.conf"], log: dir + "/out.log",
                                test: self) { NBDSecurityTests.answers(sock) }
        var st = stat()
        XCTAssertEqual(lstat(sock, &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o660)
        XCTAssertEqual(st.st_gid, 65534)
        let r = E2E.run("/bin/sh", ["-c", "printf 'jobs\\nstatus\\n' | \(nc) -N -U \(sock)"], timeout: 30)
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.out.hasPrefix("backy "), r.out)
        XCTAssertTrue(r.out.contains("1 jobs shown\r\n"), r.out)
        XCTAssertTrue(r.out.contains("| waiting for deadline | 1 |"), r.out)
        XCTAssertFalse(NBDServerProcess.canConnect(port), "no telnet listener")
        if E2E.isRoot {
            let setpriv = try ServerTest.tool("setpriv")
            let nobody = E2E.run(setpriv, ["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c",
                                           "printf 'status\\n' | \(nc) -N -U \(sock)"], timeout: 30)
            XCTAssertTrue(nobody.out.contains("| waiting for deadline | 1 |"), "nobody is in group nogroup: \(nobody.out)\(nobody.stderr)")
            let other = E2E.run(setpriv, ["--reuid=65534", "--regid=100", "--clear-groups", "/bin/sh", "-c",
                                          "printf 'status\\n' | \(nc) -N -U \(sock)"], timeout: 30)
            XCTAssertFalse(other.out.contains("waiting for deadline"), "a user outside the group is refused")
        }
        XCTAssertEqual(s.stop(), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sock))
    }
}
