// TrustSupport: helpers for the trust tests (a job with revisions,
// hand-written revision files, a child run measured with wait4 for its peak
// memory and time, reading a file's bytes) shared by the Trust*Tests files.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

enum Trust {
    /// The random seed of this run (print it; set BACKY_TEST_SEED to repeat).
    static let seed: UInt64 = {
        if let s = ProcessInfo.processInfo.environment["BACKY_TEST_SEED"], let v = UInt64(s) { return v }
        return UInt64.random(in: 1...UInt64(UInt32.max))
    }()

    /// A job over an image of `mib` MiB of random data (seeded) with one
    /// complete revision per element of `tags`; the image changes in its
    /// last MiB before each later backup. Returns paths and revision ids
    /// (oldest first) with the sha256 of each revision's image.
    static func job(_ test: XCTestCase, mib: Int = 9, tags: [String] = ["daily"], seed: UInt64 = Trust.seed,
                    file: StaticString = #filePath, line: UInt = #line)
        -> (dir: String, img: String, job: String, revs: [String], sha: [String]) {
        print("seed \(seed) (BACKY_TEST_SEED to repeat)")
        let d = E2E.tempDir(test, "trust")
        let img = d + "/disk.img", job = d + "/job"
        E2E.write(img, E2E.randomBytes(mib << 20, seed: seed), at: 0)
        let i = E2E.backy(["-b", job, "init", "file", img])
        XCTAssertEqual(i.code, 0, i.stderr, file: file, line: line)
        var sha: [String] = []
        for (k, t) in tags.enumerated() {
            if k > 0 { E2E.write(img, E2E.randomBytes(1 << 20, seed: seed &+ UInt64(k)), at: UInt64((mib - 1) << 20)) }
            let b = E2E.backy(["-b", job, "backup", t])
            XCTAssertEqual(b.code, 0, b.stderr, file: file, line: line)
            sha.append(E2E.sha256(file: img))
        }
        return (d, img, job, E2E.revisionIDs(job), sha)
    }

    /// Writes a `.rev` file by hand (complete when `duration` is given).
    static func writeRev(_ job: String, name: String, uuid: String, timestamp: String,
                         duration: String? = "1.5", backend: String = "chunked-sha256", tags: String = "[daily]") {
        var text = "backend_type: \(backend)\nparent: null\n"
        text += "stats: {bytes_written: 0\(duration.map { ", duration: \($0)" } ?? "")}\n"
        text += "tags: \(tags)\ntimestamp: \(timestamp)\ntrust: trusted\nuuid: \(uuid)\n"
        try! text.write(toFile: job + "/" + name, atomically: true, encoding: .utf8)
    }

    /// A revision id that is well-formed (22 characters of base 57).
    static func newID(_ n: Int) -> String {
        let alphabet = Array("23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
        var s = ""
        var x = n
        for _ in 0..<22 { s.append(alphabet[x % 57]); x = x / 57 + 7 }
        return s
    }

    /// Copies revision `from` of `job` to a new id with another timestamp
    /// (the map is copied; the revision uses the same chunks).
    static func cloneRevision(_ job: String, from: String, to: String, timestamp: String, tags: String? = nil) throws {
        try FileManager.default.copyItem(atPath: job + "/\(from).map", toPath: job + "/\(to).map")
        var text = try String(contentsOfFile: job + "/\(from).rev", encoding: .utf8)
        text = text.split(separator: "\n").map { line -> String in
            if line.hasPrefix("uuid: ") { return "uuid: \(to)" }
            if line.hasPrefix("timestamp: ") { return "timestamp: \(timestamp)" }
            if let tags, line.hasPrefix("tags:") { return "tags: \(tags)" }
            if tags != nil, line.hasPrefix("- ") { return "" }
            return String(line)
        }.joined(separator: "\n") + "\n"
        try text.write(toFile: job + "/\(to).rev", atomically: true, encoding: .utf8)
    }

    /// What a measured child did: exit status (or the signal that killed
    /// it), its output, peak memory (ru_maxrss, KiB) and seconds.
    struct Measured {
        let code: Int32
        let signal: Int32
        let stdout: String
        let stderr: String
        let maxRSSKiB: Int
        let seconds: Double
    }

    /// Runs the backy binary under GNU time, which forks it and reports
    /// that child's own peak memory (wait4 on a child spawned from this test
    /// process would count this process's memory: Linux carries the
    /// parent's high-water mark into a vfork child). Its whole process
    /// group is killed after `timeout` seconds (then `signal` is SIGKILL).
    static func measure(_ args: [String], timeout: Double = 60) -> Measured {
        let base = NSTemporaryDirectory() + "/backy-trust-\(UUID().uuidString)"
        let outPath = base + ".out", errPath = base + ".err", timePath = base + ".time"
        defer { unlink(outPath); unlink(errPath); unlink(timePath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(0x02))  // POSIX_SPAWN_SETPGROUP
        let time = "/usr/bin/time"
        let argv: [UnsafeMutablePointer<CChar>?] = ([time, "-o", timePath, "-f", "%M %e", E2E.binary] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let start = Date()
        let rc = argv.withUnsafeBufferPointer { posix_spawn(&pid, time, &actions, &attr, $0.baseAddress!, environ) }
        guard rc == 0 else { return Measured(code: -1, signal: 0, stdout: "", stderr: "cannot run \(time): \(rc)", maxRSSKiB: 0, seconds: 0) }
        var status: Int32 = 0
        var killed = false
        while waitpid(pid, &status, WNOHANG) != pid {
            if Date().timeIntervalSince(start) > timeout && !killed {
                kill(-pid, SIGKILL)
                killed = true
            }
            usleep(5_000)
        }
        let secs = Date().timeIntervalSince(start)
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        let report = ((try? String(contentsOfFile: timePath, encoding: .utf8)) ?? "").split(separator: "\n")
        var sig: Int32 = killed ? SIGKILL : 0
        for line in report where line.hasPrefix("Command terminated by signal ") {
            sig = Int32(line.split(separator: " ").last ?? "") ?? sig
        }
        let rss = report.last.flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
        let code: Int32 = sig != 0 ? -1 : (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
        return Measured(code: code, signal: sig, stdout: out, stderr: err, maxRSSKiB: rss, seconds: secs)
    }

    static func bytes(_ path: String) -> [UInt8] {
        (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
    }

    /// The chunk files of a job (native), sorted.
    static func chunkFiles(_ job: String) -> [String] {
        E2E.files(in: job + "/chunks", suffix: ".chunk").sorted()
    }

    /// stderr lines starting with "Error:".
    static func errorLines(_ stderr: String) -> [String] {
        stderr.split(separator: "\n").map(String.init).filter { $0.hasPrefix("Error:") }
    }
}
