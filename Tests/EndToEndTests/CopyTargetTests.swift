// CopyTargetTests: `backy copy --to DIR` on directory jobs — a target inside
// the job directory (also spelled `JOB/new/..`), above it, inside another
// job, or a non-empty directory that is no job is refused with one line and
// nothing created; a target revision whose map is missing or damaged is not
// "there already": the next copy writes it again.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class CopyTargetTests: XCTestCase {
    func testCopyRefusesTargetsInsideAboveOrBesideJobs() throws {
        let t = Trust.job(self, mib: 5)
        let other = Trust.job(self, mib: 5, seed: Trust.seed &+ 5)
        let config = try FileManager.default.attributesOfItem(atPath: t.job + "/config")
        let stray = t.dir + "/stray"
        try FileManager.default.createDirectory(atPath: stray, withIntermediateDirectories: true)
        try "notes".write(toFile: stray + "/notes.txt", atomically: true, encoding: .utf8)
        let before = Set(E2E.files(in: t.job, suffix: "")).subtracting([t.job + "/backy.log"])
        let cases: [(String, String)] = [
            (t.job + "/zz/..", "is the job's own store"),
            (t.job + "/chunks", "is inside the job directory"),
            (t.job + "/chunks/new", "is inside the job directory"),
            (t.job + "/../job/new", "is inside the job directory"),
            (t.dir, "holds the job directory"),
            (other.job + "/chunks", "is inside the backy job directory"),
            (stray, "is not a backy job directory and is not empty (1 entry)"),
        ]
        for (target, why) in cases {
            let r = E2E.backy(["-b", t.job, "copy", "--to", target])
            XCTAssertEqual(r.code, 1, "\(target): \(r.stderr)")
            XCTAssertEqual(Trust.errorLines(r.stderr).count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(why), "\(target): \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: t.job + "/zz"), "no directory made inside the job")
        XCTAssertFalse(FileManager.default.fileExists(atPath: t.job + "/chunks/new"))
        XCTAssertEqual(Set(E2E.files(in: t.job, suffix: "")).subtracting([t.job + "/backy.log"]), before)
        let after = try FileManager.default.attributesOfItem(atPath: t.job + "/config")
        XCTAssertEqual(after[.systemFileNumber] as? Int, config[.systemFileNumber] as? Int, "the job's config is the same file")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: stray), ["notes.txt"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: t.dir + "/config"), "the parent did not become a job")
        // A new directory and an empty one are fine.
        let empty = t.dir + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        for target in [t.dir + "/new/copy", empty] {
            let r = E2E.backy(["-b", t.job, "copy", "--to", target])
            XCTAssertEqual(r.code, 0, "\(target): \(r.stderr)")
            XCTAssertEqual(E2E.sha256(E2E.backy(["-b", target, "restore", "-"]).stdout), t.sha[0])
        }
    }

    func testCopyWritesAgainRevisionsWhoseMapIsGoneOrDamaged() throws {
        let t = Trust.job(self, mib: 9, tags: ["daily", "weekly", "monthly"])
        let copy = t.dir + "/copy"
        XCTAssertEqual(E2E.backy(["-b", t.job, "copy", "--to", copy]).code, 0)
        // One map gone, one cut short.
        try FileManager.default.removeItem(atPath: copy + "/\(t.revs[0]).map")
        let cut = copy + "/\(t.revs[1]).map"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: cut))
        try FileManager.default.removeItem(atPath: cut)
        try bytes.prefix(100).write(to: URL(fileURLWithPath: cut))
        let damaged = E2E.revisions(copy).filter { !($0["damage"] is NSNull) }.count
        XCTAssertEqual(damaged, 2, "the copy shows both as damaged")
        let r = E2E.backy(["-b", t.job, "copy", "--to", copy])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.out.contains("Copied 2 revisions") && r.out.contains("1 revisions there already"), r.out)
        for (i, id) in t.revs.enumerated() {
            let out = E2E.backy(["-b", copy, "restore", "-r", id, "-"])
            XCTAssertEqual(out.code, 0, out.stderr)
            XCTAssertEqual(E2E.sha256(out.stdout), t.sha[i], id)
        }
        XCTAssertEqual(E2E.revisions(copy).filter { !($0["damage"] is NSNull) }.count, 0)
        XCTAssertEqual(E2E.backy(["-b", copy, "purge"]).code, 0)
    }
}
