// YAMLLimitsTests: the YAML reader builds documents straight from libyaml's
// events and refuses, where they appear, documents that would take far more
// memory than their size (more values than `YAML.maxValues`), several
// documents in one file, and keys that are collections; keys keep their
// first place and the line of their last value. Found by fuzz/ (a dense
// 15 MB status file took `backy check` 32 s and 976 MB).
import ChunkStore
import Foundation
import XCTest

final class YAMLLimitsTests: XCTestCase {
    func testDenseDocumentIsRefusedQuickly() {
        // 1 MB of empty lists: 350,000 values, one per 3 bytes.
        let dense = "[" + String(repeating: "[],", count: 350_000) + "[]]"
        let limit = YAML.maxValues(size: dense.utf8.count)
        XCTAssertEqual(limit, 65536 + dense.utf8.count / 8)
        let start = Date()
        XCTAssertThrowsError(try YAML.parse(dense, source: "dense")) {
            XCTAssertEqual("\($0)", "dense: line 1: more than \(limit) YAML values in one document (not a file backy wrote)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
    }

    func testLargeRealFilesStayWithinTheLimit() throws {
        // A status file of 10,000 jobs in the scheduler's own shape
        // (230,000 values in 2.1 MB) and a configuration of 10,000 jobs.
        var status = ""
        var config = "global: {base-dir: /srv/backy}\nschedules:\n  default:\n    daily: {interval: 1d, keep: 9}\njobs:\n"
        for i in 0..<10_000 {
            status += "- {failures: 0, job: vm\(i), last_duration: 12.3 s, last_tags: daily, last_time: '2026-11-25 01:49:52 UTC', next_tags: daily, next_time: '2026-11-26 01:49:52 UTC', sla: OK, sla_overdue: 0, status: waiting for deadline}\n"
            config += "  vm\(i): {schedule: default, source: {type: file, filename: /srv/img/vm\(i)}}\n"
        }
        XCTAssertEqual(try YAML.parse(status).list?.count, 10_000)
        XCTAssertEqual(try YAML.parse(config).map?["jobs"]?.map?.count, 10_000)
    }

    func testOneDocumentScalarKeysAndRepeatedKeys() throws {
        XCTAssertThrowsError(try YAML.parse("a: 1\n---\nb: 2\n", source: "two")) {
            XCTAssertEqual("\($0)", "two: invalid YAML: expected a single document in the stream, but found another document at line 2")
        }
        XCTAssertThrowsError(try YAML.parse("x: 1\n? [a, b]\n: 2\n", source: "k")) {
            XCTAssertEqual("\($0)", "k: line 2: mapping keys must be scalars")
        }
        XCTAssertThrowsError(try YAML.parse("a: [1, 2\n", source: "s")) {
            XCTAssertTrue("\($0)".hasPrefix("s: invalid YAML: "), "\($0)")
        }
        let m = try XCTUnwrap(YAML.parse("a: 1\nb: '2'\na: 3\nc: \"x\\0y\"\n").map)
        XCTAssertEqual(m.keys, ["a", "b", "c"])
        XCTAssertEqual(m["a"], .int(3))
        XCTAssertEqual(m.line(of: "a"), 3)
        XCTAssertEqual(m["b"], .string("2"))
        XCTAssertEqual(m["c"], .string("x\u{0}y"))
        XCTAssertEqual(try YAML.parse(""), .null)
        XCTAssertEqual(try YAML.parse("# nothing\n"), .null)
    }

    func testLargeMapsAreIndexed() {
        var m = YAMLMap()
        for i in 0..<1000 { m["k\(i)"] = .int(Int64(i)) }
        m["k500"] = nil
        XCTAssertEqual(m.count, 999)
        XCTAssertNil(m["k500"])
        XCTAssertEqual(m["k999"], .int(999))
        XCTAssertEqual(m.keys.first, "k0")
        XCTAssertEqual(m.keys[500], "k501")
    }
}
