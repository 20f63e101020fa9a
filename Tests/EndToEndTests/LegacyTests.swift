// LegacyTests: job directories written by the real backy 2.4.3
// (Fixtures/legacy, see its README) are read as they are — status, find,
// restore, verify, purge — and `backy upgrade` converts them, resumably;
// a job may hold old and new revisions side by side.
import Foundation
import TestSupport
import XCTest

final class LegacyTests: XCTestCase {
    static var fixtures: String {
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { dir.deleteLastPathComponent() }
        return dir.path + "/Fixtures/legacy"
    }

    /// (job, revision, size, sha256) from MANIFEST.
    static var manifest: [(job: String, rev: String, size: Int, sha: String)] {
        let text = try! String(contentsOfFile: fixtures + "/MANIFEST", encoding: .utf8)
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map {
            let f = $0.split(separator: " ").map(String.init)
            return (f[0], f[1], Int(f[2])!, f[3])
        }
    }

    /// A writable copy of a fixture job (git checks files out 0644; backy
    /// left them 0440 — either works).
    func copyJob(_ name: String) -> String {
        let d = E2E.tempDir(self, "legacy")
        let dst = d + "/" + name
        XCTAssertEqual(E2E.run("/bin/cp", ["-a", LegacyTests.fixtures + "/" + name, dst]).code, 0)
        return dst
    }

    func restoreHash(_ job: String, _ rev: String) -> (Int32, Int, String, String) {
        let r = E2E.backy(["-b", job, "restore", "-r", rev, "-"])
        return (r.code, r.stdout.count, E2E.sha256(r.stdout), r.stderr)
    }

    func checkEveryRevision(_ job: String, _ name: String, _ what: String) {
        let rows = LegacyTests.manifest.filter { $0.job == (name == "job-cowfile-legacy" || name == "job-cowfile-upgraded" ? "job-cowfile" : name) }
        XCTAssertFalse(rows.isEmpty)
        for row in rows {
            let (code, size, sha, err) = restoreHash(job, row.rev)
            XCTAssertEqual(code, 0, "\(name) \(row.rev) \(what): \(err)")
            XCTAssertEqual(size, row.size, "\(name) \(row.rev) \(what)")
            XCTAssertEqual(sha, row.sha, "\(name) \(row.rev) \(what)")
        }
    }

    static let jobs = ["job-chunked", "job-shrink", "job-grow", "job-cowfile", "job-cowfile-legacy", "job-cowfile-upgraded", "job-yaml311", "job-random"]

    func testEveryFixtureRevisionRestoresBitExact() {
        for name in LegacyTests.jobs {
            checkEveryRevision(copyJob(name), name, "as written by 2.4.3")
        }
    }

    func testStatusFindAndVerifyOnLegacyRevisions() throws {
        let job = copyJob("job-chunked")
        let st = E2E.backy(["-b", job, "status"])
        XCTAssertEqual(st.code, 0, st.stderr)
        XCTAssertTrue(st.out.contains("4 revisions containing 32.05 MiB data (estimated)"), st.out)
        XCTAssertTrue(st.out.contains("| 2E86zjYEY9JZ9zLgkNpHL4 |"))
        XCTAssertTrue(st.out.contains("| manual-check  | distrusted |"), st.out)
        XCTAssertTrue(st.out.contains("4 revisions written by backy 2.x"), st.out)
        XCTAssertEqual(E2E.backy(["-b", job, "find", "-r", "0"]).out, job + "/aK73vQoKWC5oQU2et94jTk\n")
        XCTAssertEqual(E2E.backy(["-b", job, "restore", "-r", "monthly", "-"]).code, 0)
        // A damaged legacy chunk (v1's chunk 0, not shared with the verified
        // revision 2) is found, quarantined and reported.
        let chunk = job + "/chunks/ad/ad4098f5523e71cdf7b5bb6b5096e7d1.chunk.lzo"
        chmod(chunk, 0o644)
        let good = try Data(contentsOf: URL(fileURLWithPath: chunk))
        E2E.write(chunk, [0xff, 0xff, 0xff], at: 20)
        let bad = E2E.backy(["-b", job, "verify", "-r", "5sKtHXDJdP7FE54CMyYMuf"])
        XCTAssertEqual(bad.code, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("Error: bad chunk ad4098f5523e71cdf7b5bb6b5096e7d1"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: chunk), "quarantined")
        var json = E2E.revisions(job)
        XCTAssertEqual(json.map { $0["trust"] as! String }, ["distrusted", "verified", "distrusted", "distrusted"], "revisions 1 and 4 use it")
        // Put it back (as a backup from the source would); verify trusts them again.
        try good.write(to: URL(fileURLWithPath: chunk))
        let v = E2E.backy(["-b", job, "verify"])
        XCTAssertEqual(v.code, 0, v.stderr)
        json = E2E.revisions(job)
        XCTAssertEqual(json.map { $0["trust"] as! String }, ["verified", "verified", "verified", "verified"])
        XCTAssertEqual(json.map { $0["backend_type"] as! String }, ["chunked", "chunked", "chunked", "chunked"])
    }

    func testPurgeKeepsLegacyChunksThatLegacyRevisionsUse() throws {
        let job = copyJob("job-chunked")
        let before = Set(E2E.files(in: job + "/chunks", suffix: ".chunk.lzo"))
        let p = E2E.backy(["-b", job, "purge"])
        XCTAssertEqual(p.code, 0, p.stderr)
        XCTAssertEqual(p.out, "Purging: 0 chunks\n")
        XCTAssertEqual(Set(E2E.files(in: job + "/chunks", suffix: ".chunk.lzo")), before)
        // Forget revision 3: its unique chunks (v3 chunk1 and tail) go.
        XCTAssertEqual(E2E.backy(["-b", job, "forget", "-r", "2E86zjYEY9JZ9zLgkNpHL4"]).code, 0)
        let p2 = E2E.backy(["-b", job, "purge"])
        XCTAssertEqual(p2.out, "Purging: 2 chunks\n", p2.stderr)
        for row in LegacyTests.manifest where row.job == "job-chunked" && row.rev != "2E86zjYEY9JZ9zLgkNpHL4" {
            XCTAssertEqual(restoreHash(job, row.rev).2, row.sha)
        }
    }

    func testUpgradeThenRestoreAgainAndPurgeOldChunks() throws {
        for name in ["job-chunked", "job-shrink", "job-grow", "job-cowfile", "job-cowfile-legacy", "job-yaml311", "job-random"] {
            let job = copyJob(name)
            let before = E2E.revisions(job)
            let up = E2E.backy(["-b", job, "upgrade"])
            XCTAssertEqual(up.code, 0, "\(name): \(up.stderr)")
            XCTAssertTrue(up.out.hasPrefix("Found \(before.count) revisions to upgrade.\nConverting "), up.out)
            let after = E2E.revisions(job)
            XCTAssertEqual(after.map { $0["backend_type"] as! String }, after.map { _ in "chunked-sha256" }, name)
            for key in ["uuid", "timestamp", "trust", "tags", "parent", "duration", "bytes_written"] {
                XCTAssertEqual(after.map { "\($0[key] ?? "")" }, before.map { "\($0[key] ?? "")" }, "\(name) keeps \(key)")
            }
            checkEveryRevision(job, name, "after upgrade")
            // Idempotent: nothing left to do.
            XCTAssertEqual(E2E.backy(["-b", job, "upgrade"]).out, "Found 0 revisions to upgrade.\n")
            XCTAssertEqual(E2E.backy(["-b", job, "purge"]).code, 0)
            XCTAssertEqual(E2E.files(in: job + "/chunks", suffix: ".chunk.lzo"), [], "\(name): old chunks purged")
            checkEveryRevision(job, name, "after upgrade and purge")
        }
    }

    func testKilledUpgradeResumes() throws {
        var rng = E2E.rng(self)
        var killed = 0
        for round in 0..<8 {
            let job = copyJob("job-chunked")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: E2E.binary)
            p.arguments = ["-b", job, "upgrade"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t.random(in: 0...400_000, using: &rng))
            if p.isRunning { kill(p.processIdentifier, SIGKILL); killed += 1 }
            p.waitUntilExit()
            // Whatever state it died in, every revision still restores...
            checkEveryRevision(job, "job-chunked", "after a kill in round \(round)")
            // ... and the next run finishes the job.
            let up = E2E.backy(["-b", job, "upgrade"])
            XCTAssertEqual(up.code, 0, up.stderr)
            let after = E2E.revisions(job)
            XCTAssertEqual(Set(after.map { $0["backend_type"] as! String }), ["chunked-sha256"])
            XCTAssertEqual(after.count, 4)
            checkEveryRevision(job, "job-chunked", "after resuming in round \(round)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job).filter { $0.count == 22 }, [], "old map files gone")
        }
        print("upgrade: \(killed) of 8 runs killed with SIGKILL, all resumed")
    }

    func testOldAndNewRevisionsSideBySide() throws {
        let job = copyJob("job-chunked")
        // Point the job at a new image and back it up without upgrading.
        let img = (job as NSString).deletingLastPathComponent + "/new.img"
        E2E.write(img, E2E.randomBytes(6 * 1024 * 1024, seed: 42), at: 0)
        chmod(job + "/config", 0o644)
        try "filename: \(img)\ntype: file\n".write(toFile: job + "/config", atomically: true, encoding: .utf8)
        let b = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(b.code, 0, b.stderr)
        let revs = E2E.revisions(job)
        XCTAssertEqual(revs.map { $0["backend_type"] as! String }, ["chunked", "chunked", "chunked", "chunked", "chunked-sha256"])
        XCTAssertEqual(restoreHash(job, "0").2, E2E.sha256(file: img))
        checkEveryRevision(job, "job-chunked", "beside a new revision")
        XCTAssertEqual(E2E.backy(["-b", job, "purge"]).out, "Purging: 0 chunks\n")
        checkEveryRevision(job, "job-chunked", "after purge beside a new revision")
    }

    func testNBDServesLegacyRevisions() throws {
        let job = copyJob("job-chunked")
        let server = try NBDServerProcess(job: job, test: self)
        let list = E2E.run("/usr/bin/nbdinfo", ["--list", server.url])
        XCTAssertEqual(list.code, 0, list.stderr + server.log)
        for row in LegacyTests.manifest where row.job == "job-chunked" {
            XCTAssertTrue(list.out.contains(row.rev), "\(row.rev) listed")
            let out = (job as NSString).deletingLastPathComponent + "/\(row.rev).raw"
            let c = E2E.run("/usr/bin/nbdcopy", [server.url + "/" + row.rev, out])
            XCTAssertEqual(c.code, 0, c.stderr + server.log)
            XCTAssertEqual(E2E.sha256(file: out), row.sha, "nbdcopy of \(row.rev)")
        }
        let cow = copyJob("job-cowfile")
        let server2 = try NBDServerProcess(job: cow, test: self)
        let row = LegacyTests.manifest.first { $0.job == "job-cowfile" }!
        let out = (cow as NSString).deletingLastPathComponent + "/cow.raw"
        XCTAssertEqual(E2E.run("/usr/bin/nbdcopy", [server2.url + "/" + row.rev, out]).code, 0, server2.log)
        XCTAssertEqual(E2E.sha256(file: out), row.sha)
    }

    /// backy 2.4 before store v2 kept chunks two levels deep
    /// (`chunks/ab/cd/<hash>.chunk.lzo`) and had no `chunks/store` marker.
    func testStoreV1LayoutIsRead() throws {
        let job = copyJob("job-chunked")
        let fm = FileManager.default
        for f in E2E.files(in: job + "/chunks", suffix: ".chunk.lzo") {
            let name = (f as NSString).lastPathComponent
            let dir = job + "/chunks/" + name.prefix(2) + "/" + name.dropFirst(2).prefix(2)
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try fm.moveItem(atPath: f, toPath: dir + "/" + name)
        }
        try? fm.removeItem(atPath: job + "/chunks/store")
        checkEveryRevision(job, "job-chunked", "from a v1 store")
        XCTAssertEqual(E2E.backy(["-b", job, "upgrade"]).code, 0)
        checkEveryRevision(job, "job-chunked", "upgraded from a v1 store")
    }

    func testJobConfigIn25Shape() throws {
        let d = E2E.tempDir(self)
        let img = d + "/img", job = d + "/job"
        E2E.write(img, E2E.randomBytes(1_000_000, seed: 3), at: 0)
        try FileManager.default.createDirectory(atPath: job, withIntermediateDirectories: true)
        try "schedule:\n  daily: {interval: 1d, keep: 7}\nsource:\n  type: file\n  filename: \(img)\n".write(toFile: job + "/config", atomically: true, encoding: .utf8)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        XCTAssertEqual(restoreHash(job, "0").2, E2E.sha256(file: img))
    }
}
