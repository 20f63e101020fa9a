// DrillTests: `backy drill` end to end with the real checkers: clean (exit
// 0) on the GPT and the unpartitioned fixtures, failed (exit 1, naming the
// damaged partitions) on the damaged one, --json equal to the recorded
// drill.json, could-not-run (exit 2) for an unknown revision and for a time
// limit too short to check anything, and nothing left mounted or pinned.
import Foundation
import XCTest

final class DrillTests: XCTestCase {
    /// Each test gets its own TMPDIR (see PrivateTMPDIR).
    var tmpdir: PrivateTMPDIR!

    override func setUp() {
        super.setUp()
        tmpdir = PrivateTMPDIR("drill")
    }

    override func tearDown() {
        tmpdir.restore()
        super.tearDown()
    }

    static let tools = MountTests.tools + ["e2fsck", "fsck.vfat"]

    func recorded(_ job: String) throws -> [String: Any] {
        let d = try Data(contentsOf: URL(fileURLWithPath: job + "/drill.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: d) as? [String: Any])
    }

    func testDrillCleanOnGoodRevisions() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "drill-good")
        let gpt = MountFixture.job(d, MountFixture.gpt(d, seed: MountFixture.seed &+ 20).image, name: "gpt")
        let r = E2E.backy(["-b", gpt, "drill"])
        XCTAssertEqual(r.code, 0, r.out + r.stderr)
        let lines = r.out.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines[0].hasPrefix("Drill of revision ") && lines[0].hasSuffix("GPT partition table"), r.out)
        XCTAssertTrue(lines.contains { $0.contains("part1") && $0.contains("ext4") && $0.contains("clean") && $0.contains("e2fsck -fn") }, r.out)
        XCTAssertTrue(lines.contains { $0.contains("part2") && $0.contains("clean") }, r.out)
        XCTAssertTrue(lines.contains { $0.contains("part3") && $0.contains("vfat") && $0.contains("clean") && $0.contains("fsck.vfat -n") }, r.out)
        XCTAssertEqual(lines.last, "Result: clean")
        let rec = try recorded(gpt)
        XCTAssertEqual(rec["verdict"] as? String, "clean")
        XCTAssertEqual(rec["revision"] as? String, E2E.revisionIDs(gpt)[0])
        XCTAssertEqual((rec["filesystems"] as? [[String: Any]])?.map { $0["verdict"] as? String }, ["clean", "clean", "clean"])

        let bare = MountFixture.job(d, MountFixture.bare(d, seed: MountFixture.seed &+ 21).image, name: "bare")
        let j = E2E.backy(["-b", bare, "drill", "--json", "-r", "0"])
        XCTAssertEqual(j.code, 0, j.out + j.stderr)
        let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: j.stdout) as? [String: Any])
        XCTAssertEqual(doc["verdict"] as? String, "clean")
        XCTAssertEqual(doc["exit_code"] as? Int, 0)
        let fs = try XCTUnwrap(doc["filesystems"] as? [[String: Any]])
        XCTAssertEqual(fs.count, 1)
        XCTAssertEqual(fs[0]["name"] as? String, "disk")
        XCTAssertEqual(fs[0]["type"] as? String, "ext4")
        XCTAssertEqual(fs[0]["checker"] as? String, "e2fsck -fn")
        XCTAssertEqual(NSDictionary(dictionary: doc), NSDictionary(dictionary: try recorded(bare)), "--json prints drill.json")
        XCTAssertEqual(MountFixture.pins(bare), [])
        XCTAssertTrue(tmpdir.noMounts)
    }

    func testDrillFailsOnDamagedRevisionNamingThePartitions() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "drill-bad")
        let job = MountFixture.job(d, MountFixture.damaged(d, seed: MountFixture.seed &+ 22).image)
        let r = E2E.backy(["-b", job, "drill"])
        XCTAssertEqual(r.code, 1, r.out + r.stderr)
        let lines = r.out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.last, "Result: FAILED (part1, part2)", r.out)
        XCTAssertTrue(lines.contains { $0.contains("part2") && $0.contains("FAILED") && $0.contains("no filesystem recognized") }, r.out)
        XCTAssertTrue(lines.contains { $0.contains("part1") && $0.contains("ext4") && $0.contains("FAILED") && $0.contains("e2fsck -fn exit") }, r.out)
        XCTAssertTrue(lines.contains { $0.contains("part3") && $0.contains("clean") }, r.out)
        let rec = try recorded(job)
        XCTAssertEqual(rec["verdict"] as? String, "failed")
        XCTAssertEqual(rec["exit_code"] as? Int, 1)
        let fs = try XCTUnwrap(rec["filesystems"] as? [[String: Any]])
        XCTAssertEqual(fs.map { $0["verdict"] as? String }, ["failed", "failed", "clean"])
        XCTAssertFalse((fs[0]["output"] as? [String] ?? []).isEmpty, "the checker's last lines are kept")
    }

    func testDrillCouldNotRun() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "drill-norun")
        let job = MountFixture.job(d, MountFixture.bare(d, seed: MountFixture.seed &+ 23).image)
        let bad = E2E.backy(["-b", job, "drill", "-r", "nosuch"])
        XCTAssertEqual(bad.code, 2)
        XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.hasPrefix("Error: ") && bad.stderr.contains("unknown revision"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: job + "/drill.json"), "a typo records nothing")
        XCTAssertEqual(E2E.backy(["-b", d + "/nojob", "drill"]).code, 2)
        // No time for any checker: could not run, recorded as such.
        let t = E2E.backy(["-b", job, "drill", "--time-limit", "0.000001"])
        XCTAssertEqual(t.code, 2, t.out + t.stderr)
        XCTAssertTrue(t.out.contains("timeout") && t.out.contains("Result: could not run"), t.out)
        XCTAssertEqual(try recorded(job)["verdict"] as? String, "error")
        XCTAssertEqual(E2E.backy(["-b", job, "drill", "--time-limit", "0"]).code, 2)
    }
}
