// StatusReportTests: `backy status`'s table: backy 2.4's, with full header
// names, a Stored column and incomplete revisions marked.
import ChunkStore
import XCTest
@testable import backy

final class StatusReportTests: XCTestCase {
    func testStatusTableFullHeadersStoredAndIncomplete() {
        // backy 2.4's table, with full header names, a Stored column, "1
        // revision", and an incomplete revision (no duration) marked as such.
        var r = Revision(id: "1", timestamp: Timestamp.parse("2015-09-01 07:06:47")!, parent: nil, tags: [])
        r.stats = YAMLMap([("bytes_written", .int(0))])
        XCTAssertEqual(StatusReport.table([r]), """
            +---------------------+----+---------+--------+----------+------+------------+
            | Date (UTC)          | ID |    Size | Stored | Duration | Tags | Trust      |
            +---------------------+----+---------+--------+----------+------+------------+
            | 2015-09-01 07:06:47 | 1  | 0 Bytes |      - |        - |      | incomplete |
            +---------------------+----+---------+--------+----------+------+------------+
            1 revision containing 0 Bytes data (estimated)
            """)
        r.stats["duration"] = .double(31.14)
        r.stats["bytes_stored"] = .int(2500)
        let t = StatusReport.table([r, r])
        XCTAssertTrue(t.contains("| 2.44 kiB |   31.1 s |      | trusted |"), t)
        XCTAssertTrue(t.hasSuffix("\n2 revisions containing 0 Bytes data (estimated)"), t)
    }
}
