// TrustRestoreTargetTests: a restore never writes into a job directory (also
// not through `last`, a map, a chunk, a symlink or a hard link), never over
// the job's own source, and over an existing non-empty file only with
// --force; a block device target's fsync error fails the restore; the
// damage report names the revision that was restored.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class TrustRestoreTargetTests: XCTestCase {
    func testRestoreRefusesTargetsInsideTheJobAndItsSource() throws {
        let t = Trust.job(self, mib: 5)
        let rev = t.revs[0]
        let chunk = Trust.chunkFiles(t.job)[0]
        let outside = t.dir + "/outside-link"
        symlink(t.job + "/\(rev).map", outside)
        let hardLink = t.dir + "/hard-link.map"
        XCTAssertEqual(link(t.job + "/\(rev).map", hardLink), 0)
        let protected = [t.job + "/\(rev).map", t.job + "/\(rev).rev", chunk, t.img]
        let before = protected.map { E2E.sha256(file: $0) }
        // (cwd, target) pairs; every one must be refused.
        let cases: [(String?, String)] = [
            (t.job, "last"), (nil, t.job + "/last"), (nil, t.job + "/\(rev).map"), (nil, chunk),
            (t.job, "last.rev"), (nil, t.job + "/new-file.img"), (nil, t.job + "/chunks/new.img"),
            (nil, outside), (nil, hardLink), (nil, t.img), (t.dir, "job/../job/last"),
        ]
        for (cwd, target) in cases {
            for force in [false, true] {
                // `cd JOB && backy restore last` (the job is the cwd), or -b JOB.
                let job = cwd == t.job ? [] : ["-b", t.job]
                let r = E2E.run(E2E.binary, job + ["restore"] + (force ? ["--force"] : []) + [target], cwd: cwd)
                XCTAssertEqual(r.code, 1, "\(target) force=\(force): \(r.stderr)")
                XCTAssertEqual(Trust.errorLines(r.stderr).count, 1, r.stderr)
                XCTAssertTrue(r.stderr.contains("Error: refusing to restore to \(target): "), r.stderr)
            }
        }
        // The job directory itself (and its chunks/ directory).
        for dir in [t.job, t.job + "/chunks"] {
            let r = E2E.backy(["-b", t.job, "restore", dir])
            XCTAssertEqual(r.code, 1, r.stderr)
            XCTAssertEqual(Trust.errorLines(r.stderr), ["Error: restore target \(dir) is a directory"])
        }
        XCTAssertEqual(protected.map { E2E.sha256(file: $0) }, before, "nothing in the job or the source changed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: t.job + "/new-file.img"), "no file left inside the job")
        XCTAssertFalse(FileManager.default.fileExists(atPath: t.job + "/chunks/new.img"))
        let st = E2E.backy(["-b", t.job, "restore", "-"])
        XCTAssertEqual(E2E.sha256(st.stdout), t.sha[0], "the revision still restores")
        let json = E2E.backy(["-b", t.job, "status", "--json"])
        XCTAssertTrue(json.out.contains("\"trust\" : \"trusted\""), json.out)
        XCTAssertTrue(json.out.contains("\"damage\" : null"), json.out)
    }

    /// A dangling symlink that leads into a job directory (a chunk name
    /// not stored yet): refused before anything is created there, the
    /// operator's symlink kept; a dangling symlink to a fine place is
    /// followed and the file it names created.
    func testRestoreThroughADanglingSymlinkCreatesNothingInAJob() throws {
        func lexists(_ p: String) -> Bool { var st = stat(); return lstat(p, &st) == 0 }
        let t = Trust.job(self, mib: 5)
        let other = Trust.job(self, mib: 5, seed: Trust.seed &+ 77)
        let chunkName = String(repeating: "ab", count: 32) + ".chunk"
        let sub = (Trust.chunkFiles(t.job)[0] as NSString).deletingLastPathComponent
        let otherSub = (Trust.chunkFiles(other.job)[0] as NSString).deletingLastPathComponent
        for (k, dest) in [sub + "/" + chunkName, otherSub + "/" + chunkName, t.job + "/new.map"].enumerated() {
            let link = t.dir + "/dangling-\(k)"
            XCTAssertEqual(symlink(dest, link), 0)
            let r = E2E.backy(["-b", t.job, "restore", link])
            XCTAssertEqual(r.code, 1, r.stderr)
            XCTAssertEqual(Trust.errorLines(r.stderr).count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("Error: refusing to restore to \(link): it is \(dest), inside "), r.stderr)
            XCTAssertFalse(lexists(dest), "nothing created at \(dest)")
            XCTAssertTrue(lexists(link), "the symlink \(link) is kept")
        }
        let fine = t.dir + "/fine.img", link = t.dir + "/to-fine"
        XCTAssertEqual(symlink(fine, link), 0)
        let r = E2E.backy(["-b", t.job, "restore", link])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(E2E.sha256(file: fine), t.sha[0])
        XCTAssertTrue(lexists(link))
        // Both jobs still back up and restore bit-exact.
        for j in [t, other] {
            XCTAssertEqual(E2E.backy(["-b", j.job, "backup", "daily"]).code, 0)
            XCTAssertEqual(E2E.sha256(E2E.backy(["-b", j.job, "restore", "-"]).stdout), E2E.sha256(file: j.img))
        }
    }

    func testRestoreOverwritesANonEmptyFileOnlyWithForce() throws {
        let t = Trust.job(self, mib: 5)
        let out = t.dir + "/restored.img"
        let old = E2E.randomBytes(123_457, seed: Trust.seed &+ 9)
        E2E.write(out, old, at: 0)
        let r = E2E.backy(["-b", t.job, "restore", out])
        XCTAssertEqual(r.code, 1, r.stderr)
        XCTAssertEqual(Trust.errorLines(r.stderr), ["Error: refusing to restore to \(out): it exists and holds 123457 bytes; give --force to overwrite it"])
        XCTAssertEqual(Trust.bytes(out), old, "left as it was")
        let f = E2E.backy(["-b", t.job, "restore", "--force", out])
        XCTAssertEqual(f.code, 0, f.stderr)
        XCTAssertEqual(E2E.sha256(file: out), t.sha[0])
        // An empty file, a new file and stdout need no --force.
        let empty = t.dir + "/empty.img"
        FileManager.default.createFile(atPath: empty, contents: nil)
        XCTAssertEqual(E2E.backy(["-b", t.job, "restore", empty]).code, 0)
        XCTAssertEqual(E2E.sha256(file: empty), t.sha[0])
        XCTAssertEqual(E2E.backy(["-b", t.job, "restore", t.dir + "/new.img"]).code, 0)
        XCTAssertEqual(E2E.sha256(E2E.backy(["-b", t.job, "restore", "-"]).stdout), t.sha[0])
        let help = E2E.backy(["restore", "--help"])
        XCTAssertTrue(help.out.contains("--force"), help.out)
    }

    /// A block device is written as before (no --force), and an fsync that
    /// fails (a loop device over a full tmpfs: the written-back pages
    /// cannot land) fails the restore.
    func testBlockDeviceTargetFsyncErrorFailsTheRestore() throws {
        guard E2E.isRoot else { throw E2E.unavailable("needs root for tmpfs and a loop device") }
        let t = Trust.job(self, mib: 6)
        let mnt = t.dir + "/small"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let m = E2E.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt])
        guard m.code == 0 else { throw E2E.unavailable("mount tmpfs: \(m.stderr)") }
        defer { E2E.run("/bin/umount", [mnt]) }
        E2E.truncate(mnt + "/backing", 8 << 20)
        let lo = E2E.run("/sbin/losetup", ["-f", "--show", mnt + "/backing"])
        guard lo.code == 0 else { throw E2E.unavailable("losetup: \(lo.stderr)") }
        let dev = lo.out.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { E2E.run("/sbin/losetup", ["-d", dev]) }
        let r = E2E.backy(["-b", t.job, "restore", dev], env: ["BACKY_RESTORE_BUFFERED": "1"])
        XCTAssertEqual(r.code, 1, "the data never reached the device: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("Error: cannot fsync \(dev): Input/output error"), r.stderr)

        // A working loop device with old contents: no --force needed.
        let backing = t.dir + "/loop.img"
        E2E.write(backing, [UInt8](repeating: 0xAB, count: 8 << 20), at: 0)
        let lo2 = E2E.run("/sbin/losetup", ["-f", "--show", backing])
        guard lo2.code == 0 else { throw E2E.unavailable("losetup: \(lo2.stderr)") }
        let dev2 = lo2.out.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { E2E.run("/sbin/losetup", ["-d", dev2]) }
        let ok = E2E.backy(["-b", t.job, "restore", dev2])
        XCTAssertEqual(ok.code, 0, ok.stderr)
        E2E.run("/sbin/losetup", ["-d", dev2])
        XCTAssertEqual(E2E.sha256(Data(Trust.bytes(backing).prefix(6 << 20))), t.sha[0])
    }

    /// `--damage-report` names the revision restored, even when the spec
    /// means another one by the time the restore ends (`latest` after a
    /// backup that ran meanwhile).
    func testDamageReportNamesTheRestoredRevision() throws {
        let t = Trust.job(self, mib: 6)
        let old = t.revs[0]
        // Damage a chunk of the revision (one only it uses after the change).
        let chunk = Trust.chunkFiles(t.job)[0]
        chmod(chunk, 0o644)
        E2E.write(chunk, [0xde, 0xad, 0xbe, 0xef], at: 40)
        // Restore to a pipe nobody reads yet: the restore blocks in write.
        let report = t.dir + "/damage.json"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: E2E.binary)
        p.arguments = ["-b", t.job, "restore", "--best-effort", "--damage-report", report, "-"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.run()
        usleep(500_000)
        // A new revision becomes `latest` meanwhile.
        E2E.write(t.img, E2E.randomBytes(1 << 20, seed: Trust.seed &+ 77), at: 0)
        let b = E2E.backy(["-b", t.job, "backup", "daily"])
        XCTAssertEqual(b.code, 0, b.stderr)
        let newest = E2E.revisionIDs(t.job).last!
        XCTAssertNotEqual(newest, old)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 2)
        XCTAssertEqual(data.count, 6 << 20)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as! [String: Any]
        XCTAssertEqual(json["revision"] as? String, old, "the report names the revision that was restored")
    }

    /// The damage report is written by rename: it must not replace a map.
    func testDamageReportNeverReplacesAFileOfTheJob() throws {
        let t = Trust.job(self, mib: 5)
        let chunk = Trust.chunkFiles(t.job)[0]
        chmod(chunk, 0o644)
        E2E.write(chunk, [0xde, 0xad], at: 40)
        let map = t.job + "/\(t.revs[0]).map"
        let before = E2E.sha256(file: map)
        for report in [map, t.job + "/last", t.job + "/config", t.img] {
            let r = E2E.backy(["-b", t.job, "restore", "--best-effort", "--damage-report", report, "-"])
            XCTAssertEqual(r.code, 1, "\(report): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("Error: refusing to write the damage report to \(report): "), r.stderr)
        }
        XCTAssertEqual(E2E.sha256(file: map), before)
        XCTAssertEqual(readLink(t.job + "/last"), "\(t.revs[0]).map")
        // Its default place, and an explicit one of that name, are fine.
        let ok = E2E.backy(["-b", t.job, "restore", "--best-effort", "--damage-report", t.job + "/restore-damage-mine.json", "-"])
        XCTAssertEqual(ok.code, 2, ok.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: t.job + "/restore-damage-mine.json"))
    }
}

func readLink(_ p: String) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: p)
}
