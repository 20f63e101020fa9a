// JobPatternTests: the console's non-backtracking `jobs REGEX` matcher
// against Python's `re.search` (what backy 2.4 used) on fixed cases and
// on random patterns (seed printed; BACKY_TEST_SEED to repeat), plus the
// patterns that make backtracking engines take exponential time.
import Foundation
import XCTest
@testable import Scheduler

final class JobPatternTests: XCTestCase {
    func m(_ p: String, _ s: String) throws -> Bool { try JobPattern(p).matches(s) }

    func testFixedCases() throws {
        XCTAssertTrue(try m("test0", "test01"))
        XCTAssertTrue(try m("^t.*1$", "test01"))
        XCTAssertFalse(try m("^t.*1$", "test02"))
        XCTAssertTrue(try m("0[1-3]$", "vm03"))
        XCTAssertFalse(try m("0[^1-3]$", "vm03"))
        XCTAssertTrue(try m("(?i)VM", "vm03"))
        XCTAssertTrue(try m("a{2,3}b", "xaaab"))
        XCTAssertFalse(try m("^a{2,3}b", "aaaab"))
        XCTAssertTrue(try m("\\bvm\\d+\\b", "db-vm12"))
        XCTAssertTrue(try m("", "anything"))
        XCTAssertTrue(try m("x|", "abc"))
        XCTAssertTrue(try m("\\.", "a.b"))
        XCTAssertFalse(try m("\\.", "ab"))
        XCTAssertTrue(try m("(?P<n>ab)+c", "ababc"))
        XCTAssertThrowsError(try JobPattern("("))
        XCTAssertThrowsError(try JobPattern("[a"))
        XCTAssertThrowsError(try JobPattern("*a"))
        XCTAssertThrowsError(try JobPattern("(a)\\1"))
        XCTAssertThrowsError(try JobPattern("(?=a)"))
        XCTAssertThrowsError(try JobPattern("a{2000}"))
    }

    /// Patterns that take exponential time with backtracking take
    /// microseconds here.
    func testCatastrophicPatternsAreFast() throws {
        let name = String(repeating: "a", count: 200) + "!"
        for p in ["(a+)+$", "(a|aa)+$", "(a*)*b", "^(a|a?)+$", "(.*a){20}$"] {
            let t0 = Date()
            XCTAssertFalse(try m(p, name), p)
            XCTAssertLessThan(Date().timeIntervalSince(t0), 0.5, p)
        }
    }

    /// Random patterns over a small alphabet, compared with Python's re.
    func testAgreesWithPythonOnRandomPatterns() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            return XCTFail("/usr/bin/python3 is missing (scripts/install-deps)")
        }
        let seed = ProcessInfo.processInfo.environment["BACKY_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64(Date().timeIntervalSince1970)
        print("JobPatternTests seed \(seed)")
        var rng = seed | 1
        func next(_ n: Int) -> Int {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            return Int(rng % UInt64(n))
        }
        func atom(_ depth: Int) -> String {
            switch next(depth > 2 ? 6 : 8) {
            case 0, 1: return ["a", "b", "c", "0", "1", "-"][next(6)]
            case 2: return "."
            case 3: return ["[ab]", "[^a]", "[0-9]", "\\d", "\\w", "[a-c1]"][next(6)]
            case 4: return ["^", "$", "\\b"][next(3)]
            case 5: return "\\-"
            default: return "(" + expr(depth + 1) + ")"
            }
        }
        func expr(_ depth: Int) -> String {
            var s = ""
            for _ in 0..<(1 + next(3)) {
                s += atom(depth)
                switch next(8) {
                case 0: s += "*"
                case 1: s += "+"
                case 2: s += "?"
                case 3: s += ["{2}", "{1,2}", "{0,}"][next(3)]
                default: break
                }
            }
            if next(5) == 0 { s += "|" + expr(depth + 1) }
            return s
        }
        var patterns: [String] = []
        for _ in 0..<300 { patterns.append(expr(0)) }
        var names: [String] = []
        for _ in 0..<25 {
            names.append(String((0..<(1 + next(8))).map { _ in Array("abc01-")[next(6)] }))
        }
        let input = try JSONSerialization.data(withJSONObject: ["patterns": patterns, "names": names])
        let inPath = NSTemporaryDirectory() + "/jobpattern-\(seed).json"
        try input.write(to: URL(fileURLWithPath: inPath))
        defer { try? FileManager.default.removeItem(atPath: inPath) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", """
            import json, re, sys
            d = json.load(open(sys.argv[1]))
            out = []
            for pat in d['patterns']:
                try:
                    r = re.compile(pat)
                    out.append([bool(r.search(n)) for n in d['names']])
                except re.error:
                    out.append(None)
            print(json.dumps(out))
            """, inPath]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let want = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [Any])
        var compared = 0
        for (k, pat) in patterns.enumerated() {
            guard let expected = want[k] as? [Bool] else { continue }  // Python refuses it too
            let re: JobPattern
            do { re = try JobPattern(pat) } catch { XCTFail("\(pat): \(error) (Python accepts it)"); continue }
            for (j, n) in names.enumerated() {
                XCTAssertEqual(try re.matches(n), expected[j], "pattern \(pat) on \(n), seed \(seed)")
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 3000)
    }
}
