// TrustLegacyTests: backy 2.4 chunks of incompressible data (python-lzo
// expands them past 4 MiB; Fixtures/legacy/job-random, written by the real
// backy 2.4.3) are read by restore, verify, the NBD server and upgrade.
import Foundation
import XCTest

final class TrustLegacyTests: XCTestCase {
    func testExpandedLZOChunksReadEverywhere() throws {
        let job = LegacyTests.fixtures + "/job-random"
        let sizes = try String(contentsOfFile: LegacyTests.fixtures + "/expected/job-random/chunks.txt", encoding: .utf8)
        XCTAssertTrue(sizes.split(separator: "\n").contains { Int($0.split(separator: " ")[1])! > 4 << 20 },
                      "the fixture has a chunk file larger than 4 MiB: \(sizes)")
        let d = E2E.tempDir(self, "random")
        let copy = d + "/job-random"
        XCTAssertEqual(E2E.run("/bin/cp", ["-a", job, copy]).code, 0)
        let rows = LegacyTests.manifest.filter { $0.job == "job-random" }
        XCTAssertEqual(rows.count, 2)
        for row in rows {
            let r = E2E.backy(["-b", copy, "restore", "-r", row.rev, "-"])
            XCTAssertEqual(r.code, 0, r.stderr)
            XCTAssertEqual(r.stdout.count, row.size)
            XCTAssertEqual(E2E.sha256(r.stdout), row.sha, "restore of \(row.rev)")
            let out = d + "/\(row.rev).img"
            XCTAssertEqual(E2E.backy(["-b", copy, "restore", "-r", row.rev, out]).code, 0)
            XCTAssertEqual(E2E.sha256(file: out), row.sha, "restore of \(row.rev) to a file")
            let v = E2E.backy(["-b", copy, "verify", "-r", row.rev])
            XCTAssertEqual(v.code, 0, v.stderr)
        }
        let server = try NBDServerProcess(job: copy, test: self)
        for row in rows {
            let out = d + "/\(row.rev).nbd"
            let c = E2E.run("/usr/bin/nbdcopy", [server.url + "/" + row.rev, out])
            XCTAssertEqual(c.code, 0, c.stderr + server.log)
            XCTAssertEqual(E2E.sha256(file: out), row.sha, "nbdcopy of \(row.rev)")
        }
        _ = server.stop()
        let up = E2E.backy(["-b", copy, "upgrade"])
        XCTAssertEqual(up.code, 0, up.stderr)
        XCTAssertEqual(up.out.split(separator: "\n").first, "Found 2 revisions to upgrade.")
        XCTAssertEqual(E2E.backy(["-b", copy, "purge"]).code, 0)
        XCTAssertEqual(E2E.files(in: copy + "/chunks", suffix: ".chunk.lzo"), [])
        for row in rows {
            XCTAssertEqual(E2E.sha256(E2E.backy(["-b", copy, "restore", "-r", row.rev, "-"]).stdout), row.sha, "\(row.rev) after upgrade")
        }
    }
}
