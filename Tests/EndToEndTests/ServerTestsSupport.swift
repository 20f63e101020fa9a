// ServerTestsSupport: helpers for the tests of the servers' limits and
// access control (NBDLimitsTests, NBDSecurityTests, NBDMultiJobTests,
// ConsoleLimitsTests): a `backy` server child process that may listen on a
// Unix socket, raw NBD clients in Python, process memory and descriptors
// from /proc, and test jobs with random images.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A running `backy ... nbd-server ...` (or any backy server) child.
final class BackyServer {
    let process = Process()
    let logPath: String

    /// Starts `backy ARGS` and waits until `ready()` holds.
    init(_ args: [String], log: String, test: XCTestCase, ready: () -> Bool) throws {
        logPath = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: E2E.binary)
        process.arguments = args
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        test.addTeardownBlock { [self] in
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
        let deadline = Date().addingTimeInterval(30)
        while !ready() {
            guard process.isRunning, Date() < deadline else {
                throw E2E.Unavailable(description: "backy \(args.joined(separator: " ")) did not start: \(self.log)")
            }
            usleep(20_000)
        }
    }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM; the exit status, or nil if it did not stop in time.
    func stop(timeout: Double = 30) -> Int32? {
        if !process.isRunning { return process.terminationStatus }
        process.terminate()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }
}

enum ServerTest {
    /// Polls `condition` every 50 ms until it holds or `timeout` passes.
    static func wait(_ timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    static func tool(_ name: String) throws -> String {
        for d in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] where FileManager.default.isExecutableFile(atPath: d + "/" + name) {
            return d + "/" + name
        }
        throw E2E.unavailable("\(name) is not installed (scripts/install-deps)")
    }

    /// Runs a Python script with Debian's python3 (which has the nbd module).
    static func python(_ script: String, _ args: [String] = [], timeout: Double = 120) throws -> RunResult {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
              E2E.run("/usr/bin/python3", ["-c", "import nbd"]).code == 0 else {
            throw E2E.unavailable("python3-libnbd is not installed (scripts/install-deps)")
        }
        return E2E.run("/usr/bin/python3", ["-c", script] + args, timeout: timeout)
    }

    /// Starts a Python script in the background (killed at the end of the test).
    static func pythonBackground(_ script: String, _ args: [String], test: XCTestCase) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", script] + args
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        test.addTeardownBlock { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        return p
    }

    /// A field of /proc/PID/status in KiB (VmHWM, VmRSS, ...).
    static func statusKiB(_ pid: Int32, _ key: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
        }
        return 0
    }

    /// Open descriptors of a process.
    static func fdCount(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// A job with one revision of `mib` MiB of random data (seed printed),
    /// returns (job directory, image path).
    static func job(_ dir: String, name: String = "job", mib: Int, seed: UInt64) -> (String, String) {
        print("\(name): image of \(mib) MiB, seed \(seed)")
        let img = dir + "/\(name).img"
        var off: UInt64 = 0
        for k in 0..<mib {
            E2E.write(img, E2E.randomBytes(1 << 20, seed: seed &+ UInt64(k)), at: off)
            off += 1 << 20
        }
        let job = dir + "/" + name
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", img]).code, 0)
        let b = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(b.code, 0, b.stderr)
        return (job, img)
    }

    /// The seed of random test data: $BACKY_TEST_SEED or a fixed one.
    static var seed: UInt64 { ProcessInfo.processInfo.environment["BACKY_TEST_SEED"].flatMap { UInt64($0) } ?? 20261201 }

    /// Python helpers for raw NBD sessions (handshake with NBD_OPT_GO, requests).
    static let pyNBD = """
        import socket, struct, sys, time, os
        def recvall(s, n):
            b = b''
            while len(b) < n:
                x = s.recv(n - len(b))
                if not x: raise EOFError('closed')
                b += x
            return b
        def connect(addr, rcvbuf=None):
            if isinstance(addr, str):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.connect(addr)
            return s
        def option(s, code, data=b''):
            s.sendall(struct.pack('>QII', 0x49484156454F5054, code, len(data)) + data)
        def replies(s):
            out = []
            while True:
                magic, opt, typ, ln = struct.unpack('>QIII', recvall(s, 20))
                payload = recvall(s, ln)
                out.append((typ, payload))
                if typ == 1 or typ & 0x80000000: return out
        def go(addr, name, rcvbuf=None):
            s = connect(addr, rcvbuf)
            recvall(s, 18)
            s.sendall(struct.pack('>I', 3))
            n = name.encode()
            option(s, 7, struct.pack('>I', len(n)) + n + struct.pack('>H', 0))
            r = replies(s)
            if r[-1][0] != 1: raise Exception('GO failed: %x %r' % (r[-1][0], r[-1][1]))
            return s
        def read_req(s, handle, offset, length):
            s.sendall(struct.pack('>IHHQQI', 0x25609513, 0, 0, handle, offset, length))

        """
}
