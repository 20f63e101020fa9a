// BadInputTests: bad input gets one "Error: ..." line on stderr, exit 1, and
// nothing is written or lost: missing source, unknown revision, existing
// config, a directory that is not a job, a corrupt chunk, a full disk.
import Foundation
import XCTest

final class BadInputTests: XCTestCase {
    func errorLines(_ r: RunResult) -> [String] {
        r.stderr.split(separator: "\n").map(String.init).filter { $0.hasPrefix("Error: ") }
    }

    func setUpJob(_ d: String, size: Int = 9 * 1024 * 1024) -> (img: String, job: String) {
        let img = d + "/disk.img", job = d + "/job"
        E2E.write(img, E2E.randomBytes(size, seed: 7), at: 0)
        let i = E2E.backy(["-b", job, "init", "file", img])
        XCTAssertEqual(i.code, 0, i.stderr)
        let b = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(b.code, 0, b.stderr)
        return (img, job)
    }

    func testMissingSource() throws {
        let d = E2E.tempDir(self)
        let (img, job) = setUpJob(d)
        let before = try FileManager.default.contentsOfDirectory(atPath: job).sorted()
        try FileManager.default.removeItem(atPath: img)
        let r = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(r.code, 1)
        XCTAssertEqual(errorLines(r).count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("No such file or directory"), r.stderr)
        let after = try FileManager.default.contentsOfDirectory(atPath: job).sorted()
        XCTAssertEqual(before.filter { $0.hasSuffix(".rev") }, after.filter { $0.hasSuffix(".rev") }, "no revision created")
    }

    func testUnknownRevision() throws {
        let d = E2E.tempDir(self)
        let (_, job) = setUpJob(d)
        for spec in ["nosuchrev", "5", "-1", "monthly"] {
            let r = E2E.backy(["-b", job, "restore", "--revision=\(spec)", d + "/out"])
            XCTAssertEqual(r.code, 1, spec)
            XCTAssertEqual(errorLines(r).count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("unknown revision"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/out"), "nothing written for \(spec)")
        }
    }

    func testInitRefusesExistingConfig() throws {
        let d = E2E.tempDir(self)
        let (_, job) = setUpJob(d)
        let before = try String(contentsOfFile: job + "/config", encoding: .utf8)
        let r = E2E.backy(["-b", job, "init", "file", "/other"])
        XCTAssertEqual(r.code, 1)
        XCTAssertEqual(errorLines(r).count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("Refusing to initialize with existing config"), r.stderr)
        XCTAssertEqual(try String(contentsOfFile: job + "/config", encoding: .utf8), before)
        XCTAssertEqual(before, "{filename: \(d)/disk.img, type: file}\n")
    }

    func testNotAJobDirectory() throws {
        let d = E2E.tempDir(self)
        for cmd in [["status"], ["backup", "daily"], ["restore", d + "/x"], ["find"]] {
            let r = E2E.backy(["-b", d] + cmd)
            XCTAssertEqual(r.code, 1, "\(cmd)")
            XCTAssertEqual(errorLines(r).count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("not a backy job directory"), r.stderr)
        }
        let r = E2E.backy(["-b", d + "/missing", "status"])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("does not exist"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: d), [], "nothing written")
    }

    func testFlippedByteInChunkStopsRestoreWithOffset() throws {
        let d = E2E.tempDir(self)
        let (img, job) = setUpJob(d)
        let chunks = E2E.files(in: job + "/chunks", suffix: ".chunk").sorted()
        XCTAssertEqual(chunks.count, 3)
        XCTAssertEqual(E2E.backy(["-b", job, "restore", d + "/good"]).code, 0)
        XCTAssertEqual(E2E.sha256(file: d + "/good"), E2E.sha256(file: img))
        // The damaged chunk's place in the image, from the map (and checked
        // against the image's own slice): a restore must name exactly it.
        let victim = chunks[1]
        let name = (victim as NSString).lastPathComponent.replacingOccurrences(of: ".chunk", with: "")
        let map = E2E.mapChunks(job, try XCTUnwrap(E2E.revisionIDs(job).first))
        XCTAssertEqual(map.count, 3)
        let k = try XCTUnwrap(map.firstIndex(of: name), "chunk \(name) in the map")
        XCTAssertEqual(map.filter { $0 == name }.count, 1)
        let image = try Data(contentsOf: URL(fileURLWithPath: img))
        XCTAssertEqual(E2E.sha256(image.subdata(in: (k * 4194304)..<min(image.count, (k + 1) * 4194304))), name)
        let expected = "image offset \(k * 4194304) (chunk \(k))"
        chmod(victim, 0o644)
        let fh = FileHandle(forUpdatingAtPath: victim)!
        try fh.seek(toOffset: 1000)
        let b = try fh.read(upToCount: 1)!
        try fh.seek(toOffset: 1000)
        fh.write(Data([b[0] ^ 0x40]))
        try fh.close()
        for target in [d + "/bad", "-"] {
            let r = E2E.backy(["-b", job, "restore", target])
            XCTAssertEqual(r.code, 1)
            XCTAssertEqual(errorLines(r).count, 1, r.stderr)
            let line = errorLines(r).first ?? ""
            XCTAssertTrue(line.hasPrefix("Error: cannot restore \(expected): chunk \(name): content hash mismatch (data hashes to "),
                          "\(target): \(line)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/bad"), "a failed restore removes the file it created")
        // A missing chunk file is named with its place too.
        try FileManager.default.removeItem(atPath: victim)
        for target in [d + "/bad", "-"] {
            let r2 = E2E.backy(["-b", job, "restore", target])
            XCTAssertEqual(r2.code, 1)
            XCTAssertEqual(errorLines(r2), ["Error: cannot restore \(expected): chunk \(name): chunk file is missing"], r2.stderr)
        }
    }

    func testFullDiskDuringBackup() throws {
        guard E2E.isRoot else { throw E2E.unavailable("needs root to mount a small tmpfs (CI runs as root)") }
        let d = E2E.tempDir(self)
        let img = d + "/disk.img"
        E2E.write(img, E2E.randomBytes(12 * 1024 * 1024, seed: 9), at: 0)
        let mnt = d + "/small"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        XCTAssertEqual(E2E.run("/bin/mount", ["-t", "tmpfs", "-o", "size=20m", "tmpfs", mnt]).code, 0)
        defer { E2E.run("/bin/umount", [mnt]) }
        let job = mnt + "/job"
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", img]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let good = E2E.revisionIDs(job)
        let goodHash = E2E.sha256(file: img)
        // A new image that does not fit in what is left.
        E2E.write(img, E2E.randomBytes(12 * 1024 * 1024, seed: 10), at: 0)
        let r = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("No space left on device"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: ") }.count, 1, r.stderr)
        XCTAssertEqual(E2E.revisionIDs(job), good, "no incomplete revision left, the old one kept")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job + "/chunks/.tmp").count, 0, "no temp files left")
        let out = d + "/out"
        XCTAssertEqual(E2E.backy(["-b", job, "restore", out]).code, 0)
        XCTAssertEqual(E2E.sha256(file: out), goodHash)
        // With the old content back (no new space needed) the next backup
        // works, and a purge frees what the failed one left.
        E2E.write(img, E2E.randomBytes(12 * 1024 * 1024, seed: 9), at: 0)
        let again = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(again.code, 0, again.stderr)
        XCTAssertEqual(E2E.backy(["-b", job, "purge"]).code, 0)
        let revs = E2E.revisionIDs(job)
        XCTAssertEqual(revs.count, 2)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job + "/chunks/.tmp"), [], "no junk")
        XCTAssertEqual(E2E.files(in: job + "/chunks", suffix: ".chunk").filter { !$0.contains("/.tmp/") }.count, 3,
                       "only the chunks of the image remain")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job).filter { $0.contains(".tmp-") }, [])
    }
}
