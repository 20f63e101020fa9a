// BackupRestoreTests: the foundation's end-to-end behaviour through the real
// binary: back up, mutate, back up, restore every revision bit-exact; sparse
// restores; dedup of an unchanged image; restore to stdout; status and find.
import Foundation
import XCTest

final class BackupRestoreTests: XCTestCase {
    /// A 22 MiB + 123 byte image with random data, zeros, holes and text.
    func makeImage(_ path: String, seed: UInt64) {
        E2E.truncate(path, 22 * 1024 * 1024 + 123)
        E2E.write(path, E2E.randomBytes(5 * 1024 * 1024, seed: seed), at: 0)
        E2E.write(path, [UInt8](repeating: 0, count: 4 * 1024 * 1024), at: 8 * 1024 * 1024)  // written zeros
        let text = Array(String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 50_000).utf8)
        E2E.write(path, text, at: 14 * 1024 * 1024)
        E2E.write(path, E2E.randomBytes(123 + 1000, seed: seed + 1), at: 22 * 1024 * 1024 - 1000)
    }

    func testBackupMutateBackupRestoreEveryRevision() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        makeImage(img, seed: 1)
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", img]).code, 0)
        var hashes: [String] = []
        var copies: [String] = []   // a kept copy of the image of each revision
        for round in 0..<3 {
            if round > 0 { E2E.write(img, E2E.randomBytes(70_000, seed: UInt64(100 + round)), at: UInt64(round) * 3_000_000) }
            hashes.append(E2E.sha256(file: img))
            copies.append(d + "/image-\(round)")
            XCTAssertEqual(E2E.run("/bin/cp", ["--sparse=always", img, copies[round]]).code, 0)
            let r = E2E.backy(["-b", job, "backup", round == 2 ? "daily,weekly" : "daily"])
            XCTAssertEqual(r.code, 0, r.stderr)
        }
        XCTAssertEqual(Set(hashes).count, 3, "every round changed the image")
        let ids = E2E.revisionIDs(job)
        XCTAssertEqual(ids.count, 3)
        for (i, id) in ids.enumerated() {
            let out = d + "/restore-\(i)"
            let r = E2E.backy(["-b", job, "restore", "-r", id, out])
            XCTAssertEqual(r.code, 0, r.stderr)
            XCTAssertEqual(E2E.sha256(file: out), hashes[i], "revision \(i) restores bit-exact")
            let c = E2E.run("/usr/bin/cmp", [out, copies[i]])
            XCTAssertEqual(c.code, 0, "revision \(i) against its kept image: \(c.out)\(c.stderr)")
        }
        // Specs: numbers count back from the newest, tags pick the newest carrying them.
        let r0 = E2E.backy(["-b", job, "restore", "-r", "2", d + "/by-number"])
        XCTAssertEqual(r0.code, 0, r0.stderr)
        XCTAssertEqual(E2E.sha256(file: d + "/by-number"), hashes[0])
        XCTAssertEqual(E2E.backy(["-b", job, "restore", "-r", "weekly", d + "/by-tag"]).code, 0)
        XCTAssertEqual(E2E.sha256(file: d + "/by-tag"), hashes[2])
        XCTAssertEqual(E2E.backy(["-b", job, "restore", "-r", "daily", d + "/by-tag2"]).code, 0)
        XCTAssertEqual(E2E.sha256(file: d + "/by-tag2"), hashes[2])
    }

    func testRestoreIsSparseWhereTheImageHadZeros() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        makeImage(img, seed: 2)
        E2E.backy(["-b", job, "init", "file", img])
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let out = d + "/out"
        XCTAssertEqual(E2E.backy(["-b", job, "restore", out]).code, 0)
        XCTAssertEqual(E2E.sha256(file: out), E2E.sha256(file: img))
        let size: UInt64 = 22 * 1024 * 1024 + 123
        // Data: 5 MiB random, ~2.1 MiB text, ~1 KiB at the end.
        XCTAssertLessThan(E2E.allocated(out), 9 * 1024 * 1024, "zero chunks and zero blocks stay holes")
        XCTAssertLessThan(E2E.allocated(out), size / 2)
    }

    /// Files are written with O_DIRECT where the target takes it; the
    /// page-cache path (BACKY_RESTORE_BUFFERED, and targets that refuse
    /// direct I/O) gives the same bytes, also over an older, larger file.
    func testRestoreDirectAndBufferedGiveTheSameBytes() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        makeImage(img, seed: 3)
        E2E.backy(["-b", job, "init", "file", img])
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let want = E2E.sha256(file: img)
        for (name, env) in [("direct", [String: String]()), ("buffered", ["BACKY_RESTORE_BUFFERED": "1"])] {
            let out = d + "/out-" + name
            E2E.write(out, [UInt8](repeating: 0xFF, count: 30 * 1024 * 1024), at: 0)
            let r = E2E.backy(["-b", job, "restore", "--force", out], env: env)
            XCTAssertEqual(r.code, 0, r.stderr)
            XCTAssertEqual(E2E.sha256(file: out), want, name)
        }
    }

    /// A block device target (a loop device): written in place with direct
    /// I/O, zero chunks written as zeros over old contents, the unaligned
    /// tail of the image too, nothing past the image touched.
    func testRestoreToBlockDevice() throws {
        guard E2E.isRoot else { throw E2E.unavailable("needs root for a loop device (CI runs as root)") }
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job", backing = d + "/loop.img"
        makeImage(img, seed: 4)
        E2E.backy(["-b", job, "init", "file", img])
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        E2E.write(backing, [UInt8](repeating: 0xAB, count: 24 * 1024 * 1024), at: 0)
        let lo = E2E.run("/sbin/losetup", ["-f", "--show", backing])
        guard lo.code == 0 else { throw E2E.unavailable("losetup: \(lo.stderr)") }
        let dev = lo.out.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { E2E.run("/sbin/losetup", ["-d", dev]) }
        let r = E2E.backy(["-b", job, "restore", dev])
        XCTAssertEqual(r.code, 0, r.stderr)
        E2E.run("/sbin/losetup", ["-d", dev])
        let size = 22 * 1024 * 1024 + 123
        let got = try Data(contentsOf: URL(fileURLWithPath: backing))
        XCTAssertEqual(E2E.sha256(got.prefix(size)), E2E.sha256(file: img), "the image, zero chunks included")
        XCTAssertEqual(got.count, 24 * 1024 * 1024)
        XCTAssertEqual(got.suffix(from: size), Data(repeating: 0xAB, count: got.count - size), "nothing past the image is written")
    }

    func testUnchangedImageAddsNoChunkFile() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        makeImage(img, seed: 3)
        E2E.backy(["-b", job, "init", "file", img])
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let before = Set(E2E.files(in: job + "/chunks", suffix: ".chunk"))
        XCTAssertGreaterThan(before.count, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let after = Set(E2E.files(in: job + "/chunks", suffix: ".chunk"))
        XCTAssertEqual(before, after, "an unchanged image adds no chunk")
        // Zero chunks have no file: 6 chunks, one all-zero (8..12 MiB) and one hole.
        let json = E2E.backy(["-b", job, "status", "--json"])
        let revs = E2E.statusRevisions(json.stdout)
        let stats = revs[1]["stats"] as! [String: Any]
        XCTAssertEqual(stats["chunks_written"] as? Int, 0)
        XCTAssertEqual(stats["chunks"] as? Int, 6)
    }

    func testRestoreToStdoutMatchesImage() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        makeImage(img, seed: 4)
        E2E.backy(["-b", job, "init", "file", img])
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        // Without -l: log lines go to stderr, never into the data.
        let r = E2E.backy(["-b", job, "restore", "-"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(E2E.sha256(r.stdout), E2E.sha256(file: img))
        XCTAssertTrue(r.stderr.contains("Restoring revision"))
        // With -l as well, and through a pipe to sha256sum.
        let sh = E2E.run("/bin/sh", ["-c", "'\(E2E.binary)' -b '\(job)' -l '\(job)/backy.log' restore - | sha256sum"])
        XCTAssertEqual(sh.out.split(separator: " ").first.map(String.init), E2E.sha256(file: img))
        let log = try String(contentsOfFile: job + "/backy.log", encoding: .utf8)
        XCTAssertTrue(log.contains("Backy operation complete."))
        XCTAssertTrue(log.contains("$ "))
    }

    func testStatusTableAndFind() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        E2E.write(img, Array("volume contents\n".utf8), at: 0)
        E2E.backy(["-b", job, "init", "file", img])
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily,weekly"]).code, 0)
        let st = E2E.backy(["-b", job, "status"])
        XCTAssertEqual(st.code, 0)
        let lines = st.out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines[1].replacingOccurrences(of: " ", with: ""), "|Date(UTC)|ID|Size|Stored|Duration|Tags|Trust|")
        XCTAssertTrue(lines[3].contains("| 16 Bytes | 32 Bytes |"), lines[3])
        XCTAssertTrue(lines[3].contains("| daily,weekly | trusted |"), lines[3])
        XCTAssertEqual(lines[lines.count - 2], "1 revision containing 16 Bytes data (estimated)")
        XCTAssertTrue(lines.last?.hasPrefix("1 chunk; 1 never verified at rest; 32 Bytes stored, ") ?? false, st.out)
        XCTAssertTrue(lines.last?.hasSuffix(" on disk for the whole job") ?? false, st.out)
        let id = E2E.revisionIDs(job)[0]
        XCTAssertEqual(id.count, 22)
        let f = E2E.backy(["-b", job, "find", "-r", "0"])
        XCTAssertEqual(f.out, job + "/" + id + ".map\n")
        // -b after the subcommand works too, and the default is the cwd.
        XCTAssertEqual(E2E.backy(["status", "-b", job]).code, 0)
        XCTAssertEqual(E2E.backy(["status"], cwd: job).code, 0)
        XCTAssertEqual(E2E.backy(["find"], cwd: job).out, job + "/" + id + ".map\n")
        // The revision file: backy 2.4's fields, complete, read-only.
        let rev = try String(contentsOfFile: job + "/" + id + ".rev", encoding: .utf8)
        for key in ["backend_type: chunked-sha256", "parent: null", "trust: trusted", "uuid: \(id)", "tags: [daily, weekly]", "duration: "] {
            XCTAssertTrue(rev.contains(key), "\(key) in \(rev)")
        }
        XCTAssertNotNil(rev.range(of: #"timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00:00"#, options: .regularExpression))
        let attrs = try FileManager.default.attributesOfItem(atPath: job + "/" + id + ".rev")
        XCTAssertEqual((attrs[.posixPermissions] as! NSNumber).intValue, 0o440)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: job + "/last.rev"), id + ".rev")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: job + "/last"), id + ".map")
    }

    func testUsageAndGlobalOptions() throws {
        let r = E2E.backy([])
        XCTAssertEqual(r.code, 0)
        XCTAssertTrue(r.out.hasPrefix("usage: backy [-h] [-v] [-l LOGFILE] [-b BACKUPDIR]"), r.out)
        XCTAssertEqual(E2E.backy(["no-such-command"]).code, 2)
        XCTAssertEqual(E2E.backy(["restore"]).code, 2, "missing argument is a usage error")
        let h = E2E.backy(["--help"])
        XCTAssertEqual(h.code, 0)
        XCTAssertTrue(h.out.contains("Backup and restore for block devices."))
        XCTAssertTrue(h.out.contains("--backupdir"))
    }
}
