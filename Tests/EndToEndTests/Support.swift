// Support: helpers for end-to-end tests that run the built `backy` binary:
// locating it, running it with captured output, temp directories, images.
import Crypto
import Foundation
import TestSupport
import XCTest

struct RunResult {
    /// The exit status; for a process killed by a signal, the signal number
    /// (and `signal` says so).
    let code: Int32
    let stdout: Data
    let stderr: String
    var signal: Int32? = nil
    var out: String { String(decoding: stdout, as: UTF8.self) }
}

/// An interactive program driven like a person at a terminal: a line is
/// typed when the output shows what it waits for (no sleeps for pacing).
final class Interactive {
    let process = Process()
    private let input = Pipe()
    private let outPath: String

    init(_ exe: String, _ args: [String], test: XCTestCase) throws {
        outPath = NSTemporaryDirectory() + "/backy-interactive-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        let out = try XCTUnwrap(FileHandle(forWritingAtPath: outPath))
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = args
        process.standardInput = input
        process.standardOutput = out
        process.standardError = out
        try process.run()
        try out.close()
        test.addTeardownBlock { [self] in
            if process.isRunning { process.terminate(); process.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: outPath)
        }
    }

    /// Everything it printed so far (stdout and stderr).
    var output: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }

    /// Waits until `text` appears `count` times in the output.
    func waitFor(_ text: String, count: Int = 1, timeout: Double = 20) -> Bool {
        E2E.wait(timeout: timeout) { output.components(separatedBy: text).count - 1 >= count }
    }

    func type(_ line: String) { input.fileHandleForWriting.write(Data((line + "\n").utf8)) }

    /// Waits for it to end by itself (stdin stays open); its exit status,
    /// or nil if it was still running after `timeout`.
    func finish(timeout: Double = 20) -> Int32? {
        guard E2E.wait(timeout: timeout, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        try? input.fileHandleForWriting.close()
        return process.terminationStatus
    }
}

enum E2E {
    /// The backy binary: $BACKY_BIN, or next to the test bundle.
    static var binary: String {
        guard let b = BackyBinary.path else { fatalError("backy binary not found; set BACKY_BIN") }
        return b
    }

    /// Runs a program; stdout goes to a temp file (it may be large).
    @discardableResult
    static func run(_ exe: String, _ args: [String], cwd: String? = nil, env: [String: String] = [:],
                    stdinPath: String? = nil, timeout: Double = 300) -> RunResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        p.environment = e
        let outPath = NSTemporaryDirectory() + "/backy-e2e-out-\(UUID().uuidString)"
        let errPath = outPath + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outPath); try? FileManager.default.removeItem(atPath: errPath) }
        let outH = FileHandle(forWritingAtPath: outPath)!
        let errH = FileHandle(forWritingAtPath: errPath)!
        p.standardOutput = outH
        p.standardError = errH
        if let stdinPath { p.standardInput = FileHandle(forReadingAtPath: stdinPath) } else { p.standardInput = FileHandle.nullDevice }
        do { try p.run() } catch { return RunResult(code: -1, stdout: Data(), stderr: "cannot run \(exe): \(error)") }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { p.terminate(); p.waitUntilExit() }
        p.waitUntilExit()
        try? outH.close(); try? errH.close()
        let out = (try? Data(contentsOf: URL(fileURLWithPath: outPath))) ?? Data()
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return RunResult(code: p.terminationStatus, stdout: out, stderr: err,
                         signal: p.terminationReason == .uncaughtSignal ? p.terminationStatus : nil)
    }

    @discardableResult
    static func backy(_ args: [String], cwd: String? = nil, env: [String: String] = [:]) -> RunResult {
        run(binary, args, cwd: cwd, env: env)
    }

    /// A fresh temp directory, removed at the end of the test.
    static func tempDir(_ test: XCTestCase, _ name: String = "backy") -> String {
        var base = ProcessInfo.processInfo.environment["BACKY_TEST_TMP"] ?? NSTemporaryDirectory()
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        base = (base as NSString).resolvingSymlinksInPath
        let d = base + "/\(name)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    static func sha256(file: String) -> String {
        guard let fh = FileHandle(forReadingAtPath: file) else { return "missing" }
        var h = SHA256()
        while let d = try? fh.read(upToCount: 4 << 20), !d.isEmpty { h.update(data: d) }
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func sha256(_ d: Data) -> String {
        SHA256.hash(data: d).map { String(format: "%02x", $0) }.joined()
    }

    /// Deterministic pseudo-random bytes (xorshift), fast enough for tests.
    static func randomBytes(_ n: Int, seed: UInt64) -> [UInt8] {
        var s = seed &* 0x9E3779B97F4A7C15 | 1
        var out = [UInt8](repeating: 0, count: n)
        out.withUnsafeMutableBytes { b in
            let words = n / 8
            let p = b.baseAddress!
            for i in 0..<words {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17
                p.storeBytes(of: s, toByteOffset: i * 8, as: UInt64.self)
            }
            for i in (words * 8)..<n { s ^= s << 13; s ^= s >> 7; s ^= s << 17; p.storeBytes(of: UInt8(truncatingIfNeeded: s), toByteOffset: i, as: UInt8.self) }
        }
        return out
    }

    /// Writes `bytes` at `offset` into `path` (creating it, not truncating).
    static func write(_ path: String, _ bytes: [UInt8], at offset: UInt64) {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let fh = FileHandle(forWritingAtPath: path)!
        try! fh.seek(toOffset: offset)
        fh.write(Data(bytes))
        try! fh.close()
    }

    static func truncate(_ path: String, _ size: UInt64) {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let fh = FileHandle(forWritingAtPath: path)!
        try! fh.truncate(atOffset: size)
        try! fh.close()
    }

    /// Allocated bytes of a file (st_blocks × 512).
    static func allocated(_ path: String) -> UInt64 {
        var st = stat()
        guard lstat(path, &st) == 0 else { return 0 }
        return UInt64(st.st_blocks) * 512
    }

    static func files(in dir: String, suffix: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix(suffix) }.map { dir + "/" + $0 }
    }

    /// The revisions of `backy status --json` ({job, revisions, store}),
    /// oldest first. A failing `status` or output without a revisions list
    /// fails the test (never an empty list that would let a loop over the
    /// revisions pass doing nothing).
    static func revisions(_ job: String, env: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        let r = backy(["-b", job, "status", "--json"], env: env)
        XCTAssertEqual(r.code, 0, "status --json of \(job): \(r.stderr)", file: file, line: line)
        guard let o = try? JSONSerialization.jsonObject(with: r.stdout) as? [String: Any],
              let arr = o["revisions"] as? [[String: Any]] else {
            XCTFail("status --json of \(job) has no revisions list: \(r.out.prefix(300))", file: file, line: line)
            return []
        }
        return arr
    }

    static func revisionIDs(_ job: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        revisions(job, file: file, line: line).map { $0["uuid"] as! String }
    }

    /// The chunk ids of a native revision in image order (64 hex digits;
    /// all zeros for a zero chunk), read from `<id>.map` as
    /// docs/store-format.md describes it, without asking backy.
    static func mapChunks(_ job: String, _ id: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        guard let d = FileManager.default.contents(atPath: job + "/" + id + ".map"), d.count >= 64,
              d.prefix(8) == Data("BACKYMAP".utf8) else {
            XCTFail("no readable map for revision \(id) in \(job)", file: file, line: line)
            return []
        }
        let b = [UInt8](d)
        let count = (0..<8).reduce(0) { $0 | Int(b[24 + $1]) << (8 * $1) }
        XCTAssertEqual(b.count, 64 + 32 * count, "map size", file: file, line: line)
        return (0..<count).map { k in b[(64 + 32 * k)..<(64 + 32 * k + 32)].map { String(format: "%02x", $0) }.joined() }
    }

    /// A replayable generator for a test that draws random values (seed
    /// printed; BACKY_TEST_SEED replays it).
    static func rng(_ test: XCTestCase) -> XorShift { TestSeed.rng(test.name) }

    static var isRoot: Bool { getuid() == 0 }

    /// A test cannot run here (a tool, root, a device is missing). In CI that
    /// is a missing install step or a broken feature, so it fails; only with
    /// BACKY_ALLOW_SKIPS=1 (a developer machine without them) is it a skip.
    static func unavailable(_ reason: String) -> Error {
        if ProcessInfo.processInfo.environment["BACKY_ALLOW_SKIPS"] == "1" { return XCTSkip(reason) }
        return Unavailable(description: reason + " (set BACKY_ALLOW_SKIPS=1 to skip instead)")
    }

    struct Unavailable: Error, CustomStringConvertible { let description: String }

    /// The path of an installed tool; a missing one fails the test
    /// (`unavailable`), never skips it quietly.
    static func tool(_ name: String) throws -> String {
        for d in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] where FileManager.default.isExecutableFile(atPath: d + "/" + name) {
            return d + "/" + name
        }
        throw unavailable("\(name) is not installed (scripts/install-deps)")
    }

    /// Polls `condition` until it holds or `timeout` passes.
    @discardableResult
    static func wait(timeout: Double, _ condition: () -> Bool) -> Bool { waitUntil(timeout: timeout, condition) }

    /// A TCP port on 127.0.0.1 that nobody listens on right now.
    static func freePort() -> Int { freeTCPPort() }

}
