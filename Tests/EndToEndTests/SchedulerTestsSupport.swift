// SchedulerTestsSupport: runs `backy scheduler` as a child process on a test
// configuration, talks to its telnet console over TCP, and waits for things to
// happen in the job directories.
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP client for the console.
final class ConsoleClient {
    let fd: Int32
    private(set) var received = Data()

    /// Connects and reads the banner up to the first prompt.
    init(host: String = "127.0.0.1", port: Int, timeout: Double = 10) throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let ai = res else {
            throw NSError(domain: "console", code: 1, userInfo: [NSLocalizedDescriptionKey: "cannot resolve \(host)"])
        }
        defer { freeaddrinfo(res) }
        fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            let e = errno
            close(fd)
            throw NSError(domain: "console", code: Int(e), userInfo: [NSLocalizedDescriptionKey: "connect: \(String(cString: strerror(e)))"])
        }
        _ = try readUntil("backy> ")
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads until `marker` appears in the not yet consumed input; returns the text
    /// before it (and consumes it with the marker). Throws on timeout or EOF.
    func readUntil(_ marker: String) throws -> String {
        String(decoding: try readRawUntil(marker), as: UTF8.self)
    }

    /// Like `readUntil`, as bytes.
    func readRawUntil(_ marker: String) throws -> [UInt8] {
        let m = Data(marker.utf8)
        while true {
            if let r = received.range(of: m) {
                let bytes = [UInt8](received[received.startIndex..<r.lowerBound])
                received = Data(received[r.upperBound...])
                return bytes
            }
            var buf = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 {
                throw NSError(domain: "console", code: 2, userInfo: [NSLocalizedDescriptionKey:
                    "connection ended before \(marker.debugDescription); got \(String(decoding: received, as: UTF8.self).debugDescription)"])
            }
            received.append(contentsOf: buf[0..<n])
        }
    }

    /// Reads everything until the server closes the connection.
    func readToEnd() -> String {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            received.append(contentsOf: buf[0..<n])
        }
        defer { received = Data() }
        return String(decoding: received, as: UTF8.self)
    }

    /// Sends a command line and returns the answer (up to the next prompt), with
    /// CR LF turned into LF.
    func ask(_ line: String) throws -> String {
        send(Array((line + "\r\n").utf8))
        return try readUntil("backy> ").replacingOccurrences(of: "\r\n", with: "\n")
    }
}

/// A scheduler under test: config, job images, the running process.
final class SchedulerHarness {
    let dir: String
    let port: Int
    var jobsYAML: [String] = []
    var schedulesYAML: String
    var extraGlobal: String
    var env: [String: String] = [:]
    private(set) var process: Process?

    var config: String { dir + "/backy.conf" }
    var base: String { dir + "/base" }
    var log: String { dir + "/scheduler.log" }
    var statusFile: String { base + "/status" }

    init(_ test: XCTestCase, schedules: String, extraGlobal: String = "") {
        dir = E2E.tempDir(test, "sched")
        port = E2E.freePort()
        schedulesYAML = schedules
        self.extraGlobal = extraGlobal
        try! FileManager.default.createDirectory(atPath: dir + "/base", withIntermediateDirectories: true)
        test.addTeardownBlock { [weak self] in self?.kill() }
    }

    /// Adds a file job (an image of `size` random bytes, unless `image` is given).
    func addJob(_ name: String, schedule: String, size: Int = 1 << 20, image: String? = nil) {
        let img = image ?? "images/\(name).img"
        if image == nil {
            try? FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
            E2E.write(dir + "/" + img, E2E.randomBytes(size, seed: name.utf8.reduce(5381) { $0 &* 33 &+ UInt64($1) }), at: 0)
        }
        jobsYAML.append("  \(name):\n    schedule: \(schedule)\n    source: {type: file, filename: \(img)}")
    }

    func writeConfig() {
        let text = """
            global:
              base-dir: base
              worker-limit: 2
              status-interval: 1
              telnet-addrs: 127.0.0.1
              telnet-port: \(port)
            \(extraGlobal)
            schedules:
            \(schedulesYAML)
            jobs:
            \(jobsYAML.joined(separator: "\n"))

            """
        try! text.write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// Starts the scheduler (logging to `log`) and waits until its console answers.
    func start(file: StaticString = #filePath, line: UInt = #line) {
        writeConfig()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: E2E.binary)
        p.arguments = ["-l", log, "scheduler", "-c", config]
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        p.environment = e
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try! p.run()
        process = p
        let up = wait(timeout: 30) { (try? ConsoleClient(port: self.port, timeout: 2)) != nil || !p.isRunning }
        XCTAssertTrue(up && p.isRunning, "scheduler is up; log:\n\(logText)", file: file, line: line)
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    func jobLog(_ job: String) -> String { (try? String(contentsOfFile: base + "/\(job)/backy.log", encoding: .utf8)) ?? "" }

    /// One console command on a fresh connection.
    func console(_ line: String) -> String {
        do {
            let c = try ConsoleClient(port: port)
            return try c.ask(line)
        } catch {
            return "console error: \(error)"
        }
    }

    /// Sends a signal to the scheduler.
    func signal(_ sig: Int32) {
        if let p = process { Glibc.kill(p.processIdentifier, sig) }
    }

    /// SIGTERM and wait; returns the exit status (nil if it did not stop in time).
    @discardableResult
    func stop(timeout: Double = 30) -> Int32? {
        guard let p = process else { return nil }
        signal(SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { return nil }
        return p.terminationStatus
    }

    func kill() {
        if let p = process, p.isRunning {
            Glibc.kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
    }

    /// Polls `condition` until it holds or `timeout` passes.
    @discardableResult
    func wait(timeout: Double, _ condition: () -> Bool) -> Bool { E2E.wait(timeout: timeout, condition) }

    /// Complete revisions of a job (ids).
    func revisions(_ job: String) -> [String] {
        guard FileManager.default.fileExists(atPath: base + "/\(job)/config") else { return [] }
        return E2E.revisionIDs(base + "/\(job)")
    }

    /// How many revisions the job's backups have created so far.
    func createdRevisions(_ job: String) -> Int {
        jobLog(job).components(separatedBy: "\n").filter { $0.contains(" New revision ") }.count
    }

    /// Ids of the revisions the job's backups completed, oldest first.
    func completedRevisions(_ job: String) -> [String] {
        jobLog(job).components(separatedBy: "\n").compactMap { line -> String? in
            guard let r = line.range(of: " Backup ") else { return nil }
            let rest = line[r.upperBound...]
            guard let sp = rest.firstIndex(of: " "), rest[sp...].hasPrefix(" complete: ") else { return nil }
            return String(rest[..<sp])
        }
    }

    /// The `jobs` table row of a job.
    func jobsRow(_ job: String) -> String {
        console("jobs ^\(job)$").components(separatedBy: "\n").first { $0.hasPrefix("| \(job) ") } ?? ""
    }
}
