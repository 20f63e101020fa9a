// OperatorSupport: helpers for the end-to-end tests of the operator's
// features (issue 16): `status --json`'s revisions, tree hashes of a job
// directory (a dry run must change nothing), a pseudo-terminal via
// script(1), an HTTP GET with curl, and a Prometheus text parser.
import Crypto
import Foundation
import XCTest

extension E2E {
    /// The revisions of `status --json` ({job, revisions, store}).
    static func statusRevisions(_ data: Data) -> [[String: Any]] {
        guard let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
        return (o["revisions"] as? [[String: Any]]) ?? []
    }
}

enum Operator {
    /// A hash of everything under `dir`: names, types, modes, sizes,
    /// modification times and contents (symlinks by their target).
    static func treeHash(_ dir: String) -> String {
        var h = SHA256()
        func walk(_ path: String, _ rel: String) {
            var st = stat()
            guard lstat(path, &st) == 0 else { return }
            h.update(data: Data("\(rel)\u{0}\(st.st_mode)\u{0}\(st.st_size)\u{0}\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)\u{0}".utf8))
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
                for n in names { walk(path + "/" + n, rel + "/" + n) }
            case S_IFREG:
                if let d = FileManager.default.contents(atPath: path) { h.update(data: d) }
            case S_IFLNK:
                h.update(data: Data(((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "").utf8))
            default:
                break
            }
        }
        walk(dir, ".")
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Chunk files of a job's store: path → size (read independently of backy).
    static func chunkFiles(_ job: String) -> [String: Int] {
        var out: [String: Int] = [:]
        for f in E2E.files(in: job + "/chunks", suffix: ".chunk") {
            out[f] = (try? FileManager.default.attributesOfItem(atPath: f)[.size] as? Int) ?? -1
        }
        return out
    }

    /// A new file job with an image of `mib` MiB of seeded random data.
    static func job(_ test: XCTestCase, mib: Int, seed: UInt64, name: String = "op") -> (dir: String, job: String, image: String) {
        let dir = E2E.tempDir(test, name)
        let image = dir + "/image.raw"
        E2E.write(image, E2E.randomBytes(mib << 20, seed: seed), at: 0)
        let job = dir + "/job"
        let r = E2E.backy(["-b", job, "init", "file", image])
        XCTAssertEqual(r.code, 0, r.stderr)
        return (dir, job, image)
    }

    /// The seed of a test's random data: $BACKY_TEST_SEED or the given one
    /// (printed, so a failure can be repeated).
    static func seed(_ fallback: UInt64) -> UInt64 {
        let s = ProcessInfo.processInfo.environment["BACKY_TEST_SEED"].flatMap(UInt64.init) ?? fallback
        print("seed: \(s) (BACKY_TEST_SEED)")
        return s
    }

    /// Runs a shell command line under a pseudo-terminal (script -qc); the
    /// output is what the terminal would show, raw (carriage returns,
    /// escape sequences).
    static func underTerminal(_ command: String, timeout: Double = 120) throws -> RunResult {
        guard let script = which("script") else { throw E2E.unavailable("script(1) (bsdutils) is not installed") }
        let out = NSTemporaryDirectory() + "/backy-pty-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = E2E.run(script, ["-qec", command, out], env: ["TERM": "xterm", "COLUMNS": "100"], timeout: timeout)
        let typescript = (try? Data(contentsOf: URL(fileURLWithPath: out))) ?? Data()
        return RunResult(code: r.code, stdout: typescript, stderr: r.stderr)
    }

    static func which(_ tool: String) -> String? {
        for d in ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"] where FileManager.default.isExecutableFile(atPath: d + "/" + tool) {
            return d + "/" + tool
        }
        return nil
    }

    /// curl's answer to a request: status code, headers, body.
    static func curl(_ args: [String]) throws -> (status: Int, body: String) {
        guard let curl = which("curl") else { throw E2E.unavailable("curl is not installed") }
        let r = E2E.run(curl, ["-sS", "--max-time", "20", "-w", "\n%{http_code}"] + args, timeout: 30)
        var lines = r.out.components(separatedBy: "\n")
        let code = Int(lines.removeLast()) ?? -1
        return (code, lines.joined(separator: "\n"))
    }

    /// A sample of the Prometheus text format.
    struct Sample: Equatable {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    /// Parses the Prometheus text exposition format strictly enough to fail
    /// on anything a scraper would reject: every sample's family has a TYPE
    /// line before it, names and label names are valid, values are numbers,
    /// no series appears twice.
    static func parseMetrics(_ text: String) throws -> [Sample] {
        struct Bad: Error, CustomStringConvertible { let description: String }
        func validName(_ s: Substring) -> Bool {
            guard let f = s.first, f.isLetter || f == "_" || f == ":" else { return false }
            return s.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "_" || $0 == ":" }
        }
        var typed: [String: String] = [:]
        var seen = Set<String>()
        var out: [Sample] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, validName(parts[2]), ["gauge", "counter", "histogram", "summary", "untyped"].contains(String(parts[3])) else {
                    throw Bad(description: "bad TYPE line: \(line)")
                }
                guard typed[String(parts[2])] == nil else { throw Bad(description: "TYPE twice: \(line)") }
                typed[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("# HELP ") || line.hasPrefix("#") { continue }
            var name = Substring(line), labels: [String: String] = [:], rest = Substring("")
            if let brace = line.firstIndex(of: "{") {
                name = line[..<brace]
                guard let close = line.lastIndex(of: "}") else { throw Bad(description: "unclosed labels: \(line)") }
                let body = line[line.index(after: brace)..<close]
                // label="value" pairs; values may hold escaped quotes.
                var i = body.startIndex
                while i < body.endIndex {
                    guard let eq = body[i...].firstIndex(of: "=") else { throw Bad(description: "bad labels: \(line)") }
                    let key = body[i..<eq]
                    guard validName(key), body[body.index(after: eq)] == "\"" else { throw Bad(description: "bad label name: \(line)") }
                    var j = body.index(eq, offsetBy: 2)
                    var value = ""
                    while j < body.endIndex && body[j] != "\"" {
                        if body[j] == "\\" { j = body.index(after: j) }
                        value.append(body[j])
                        j = body.index(after: j)
                    }
                    guard j < body.endIndex else { throw Bad(description: "unterminated label value: \(line)") }
                    labels[String(key)] = value
                    j = body.index(after: j)
                    if j < body.endIndex && body[j] == "," { j = body.index(after: j) }
                    i = j
                }
                rest = line[line.index(after: close)...]
            } else {
                guard let sp = line.firstIndex(of: " ") else { throw Bad(description: "no value: \(line)") }
                name = line[..<sp]
                rest = line[sp...]
            }
            guard validName(name) else { throw Bad(description: "bad metric name: \(line)") }
            guard typed[String(name)] != nil else { throw Bad(description: "sample before its TYPE line: \(line)") }
            let fields = rest.split(separator: " ")
            guard fields.count == 1 || fields.count == 2, let v = Double(fields[0]) ?? (fields[0] == "+Inf" ? .infinity : nil) else {
                throw Bad(description: "bad value: \(line)")
            }
            let key = "\(name)\(labels.sorted { $0.key < $1.key })"
            guard seen.insert(key).inserted else { throw Bad(description: "series twice: \(line)") }
            out.append(Sample(name: String(name), labels: labels, value: v))
        }
        return out
    }

    static func value(_ samples: [Sample], _ name: String, job: String? = nil) -> Double? {
        samples.first { $0.name == name && (job == nil ? $0.labels.isEmpty : $0.labels == ["job": job!]) }?.value
    }
}
