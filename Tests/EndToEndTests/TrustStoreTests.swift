// TrustStoreTests: hostile or damaged files in a job directory. Revision
// files without a valid id are ignored (never used as a path, never
// deleted); purge deletes nothing when a map cannot be read or a revision
// lost its map, never acts through symlinks in chunks/ and refuses a store
// that is not provably the job's own; `verify -r` reads every chunk;
// corrupt map headers, absurd timestamps, future dates, YAML bombs and
// oversized files give one error line, never a trap, a hang or gigabytes.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class TrustStoreTests: XCTestCase {
    // MARK: revision ids (item 2)

    func testRevisionFilesWithoutAValidIDAreIgnoredAndKept() throws {
        let t = Trust.job(self, mib: 5)
        let old = "2020-01-01 00:00:00+00:00"
        Trust.writeRev(t.job, name: "config.rev", uuid: "config", timestamp: old, duration: nil)
        Trust.writeRev(t.job, name: "chunks.rev", uuid: "chunks", timestamp: old, duration: nil)
        Trust.writeRev(t.job, name: "x.y.rev", uuid: "x.y", timestamp: old, duration: nil)
        Trust.writeRev(t.job, name: "z.z.rev", uuid: "z.z", timestamp: old)
        Trust.writeRev(t.job, name: "evil.rev", uuid: "../../etc/passwd", timestamp: old, duration: nil)
        let config = Trust.bytes(t.job + "/config")
        for round in 0..<2 {
            E2E.write(t.img, E2E.randomBytes(4096, seed: Trust.seed &+ UInt64(round)), at: 0)
            let b = E2E.backy(["-b", t.job, "backup", "daily"])
            XCTAssertEqual(b.code, 0, "round \(round): \(b.stderr)")
            let warnings = b.stderr.split(separator: "\n").filter { $0.contains("not valid revisions") }
            XCTAssertEqual(warnings.count, 1, "one warning per scan, not one per file: \(b.stderr)")
            XCTAssertTrue(warnings.first?.contains("ignoring 5 revision file(s)") ?? false, b.stderr)
        }
        XCTAssertEqual(Trust.bytes(t.job + "/config"), config, "config untouched")
        XCTAssertTrue(isRealDirectory(t.job + "/chunks"))
        for n in ["config.rev", "chunks.rev", "x.y.rev", "z.z.rev", "evil.rev"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: t.job + "/" + n), "\(n) is never deleted")
        }
        let ids = E2E.revisionIDs(t.job)
        XCTAssertEqual(ids.count, 3)
        XCTAssertEqual(ids[0], t.revs[0])
        for spec in ["config", "x.y", "z.z", "chunks"] {
            let f = E2E.backy(["-b", t.job, "forget", "-r", spec])
            XCTAssertEqual(f.code, 1, f.stderr)
            XCTAssertTrue(f.stderr.contains("Error: unknown revision '\(spec)'"), f.stderr)
        }
        XCTAssertEqual(E2E.backy(["-b", t.job, "purge"]).code, 0)
        XCTAssertEqual(E2E.sha256(E2E.backy(["-b", t.job, "restore", "-r", t.revs[0], "-"]).stdout), t.sha[0])
    }

    // MARK: purge never treats an unreadable map as absent (item 3)

    /// Two revisions over different data: every chunk of the first is
    /// referenced by its map only.
    func twoRevisions() -> (t: (dir: String, img: String, job: String, revs: [String], sha: [String]), first: [String]) {
        var t = Trust.job(self, mib: 5)
        let first = Trust.chunkFiles(t.job)
        E2E.write(t.img, E2E.randomBytes(5 << 20, seed: Trust.seed &+ 1000), at: 0)
        XCTAssertEqual(E2E.backy(["-b", t.job, "backup", "daily"]).code, 0)
        t.revs = E2E.revisionIDs(t.job)
        t.sha.append(E2E.sha256(file: t.img))
        return (t, first)
    }

    func testPurgeDeletesNothingWhenAMapCannotBeRead() throws {
        let (t, first) = twoRevisions()
        let map = t.job + "/\(t.revs[0]).map"
        let saved = t.dir + "/saved.map"
        try FileManager.default.moveItem(atPath: map, toPath: saved)
        let all = Trust.chunkFiles(t.job)
        // EISDIR: the map is a directory.
        try FileManager.default.createDirectory(atPath: map, withIntermediateDirectories: false)
        var p = E2E.backy(["-b", t.job, "purge"])
        XCTAssertEqual(p.code, 1, p.stderr)
        XCTAssertEqual(Trust.errorLines(p.stderr).count, 1, p.stderr)
        XCTAssertTrue(p.stderr.contains("is not a regular file; purge removes nothing"), p.stderr)
        XCTAssertEqual(Trust.chunkFiles(t.job), all, "nothing deleted")
        try FileManager.default.removeItem(atPath: map)
        // A dangling symlink.
        symlink(t.dir + "/nowhere.map", map)
        p = E2E.backy(["-b", t.job, "purge"])
        XCTAssertEqual(p.code, 1, p.stderr)
        XCTAssertTrue(p.stderr.contains("is a dangling symlink"), p.stderr)
        XCTAssertEqual(Trust.chunkFiles(t.job), all)
        unlink(map)
        // Missing: the revision is damaged; purge refuses, status says so.
        p = E2E.backy(["-b", t.job, "purge"])
        XCTAssertEqual(p.code, 1, p.stderr)
        XCTAssertTrue(p.stderr.contains("revision \(t.revs[0]) has no readable map"), p.stderr)
        XCTAssertEqual(Trust.chunkFiles(t.job), all)
        let st = E2E.backy(["-b", t.job, "status"])
        XCTAssertEqual(st.code, 0, st.stderr)
        XCTAssertTrue(st.out.contains("| \(t.revs[0]) |"), st.out)
        XCTAssertTrue(st.out.contains("| daily | damaged"), st.out)
        XCTAssertTrue(st.out.contains("Revision \(t.revs[0]) is DAMAGED: "), st.out)
        let json = E2E.statusRevisions(E2E.backy(["-b", t.job, "status", "--json"]).stdout)
        XCTAssertEqual(json.map { $0["trust"] as! String }, ["damaged", "trusted"])
        XCTAssertTrue((json[0]["damage"] as? String)?.contains("map file is missing") ?? false, "\(json[0])")
        XCTAssertTrue(json[1]["damage"] is NSNull)
        // Back in place: purge keeps everything, both restore.
        try FileManager.default.moveItem(atPath: saved, toPath: map)
        p = E2E.backy(["-b", t.job, "purge"])
        XCTAssertEqual(p.code, 0, p.stderr)
        XCTAssertEqual(p.out, "Purging: 0 chunks\n")
        for (r, sha) in zip(t.revs, t.sha) {
            XCTAssertEqual(E2E.sha256(E2E.backy(["-b", t.job, "restore", "-r", r, "-"]).stdout), sha)
        }
        // Forgotten for real: now its chunks go.
        XCTAssertEqual(E2E.backy(["-b", t.job, "forget", "-r", t.revs[0]]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", t.job, "purge"]).out, "Purging: \(first.count) chunks\n")
    }

    // MARK: purge and verify stay inside the job's own store (item 4)

    func testPurgeNeverActsThroughSymlinksInChunks() throws {
        let t = Trust.job(self, mib: 5)
        // (1) A subdirectory that is a symlink to somewhere else, holding a
        // file named like an unreferenced chunk.
        let elsewhere = t.dir + "/elsewhere"
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        let victim = elsewhere + "/" + String(repeating: "ee", count: 32) + ".chunk"
        E2E.write(victim, [1, 2, 3], at: 0)
        try FileManager.default.removeItem(atPath: t.job + "/chunks/ee")
        symlink(elsewhere, t.job + "/chunks/ee")
        var p = E2E.backy(["-b", t.job, "purge"])
        XCTAssertEqual(p.code, 1, p.stderr)
        XCTAssertEqual(Trust.errorLines(p.stderr), ["Error: \(t.job)/chunks/ee is a symlink: refusing to act on a chunk store that is not provably this job's own (chunks/ and its subdirectories must be real directories, not symlinks)"])
        XCTAssertEqual(Trust.bytes(victim), [1, 2, 3], "the file outside the job is untouched")
        let v = E2E.backy(["-b", t.job, "verify", "-r", "0"])
        XCTAssertEqual(v.code, 1, v.stderr)
        XCTAssertTrue(v.stderr.contains("is a symlink: refusing to act on a chunk store"), v.stderr)
        unlink(t.job + "/chunks/ee")
        try FileManager.default.createDirectory(atPath: t.job + "/chunks/ee", withIntermediateDirectories: false)
        // (2) A symlinked chunk file (to a file outside).
        let sub = t.job + "/chunks/" + String(repeating: "ab", count: 1)
        let link = sub + "/" + String(repeating: "ab", count: 32) + ".chunk"
        symlink(victim, link)
        p = E2E.backy(["-b", t.job, "purge"])
        XCTAssertEqual(p.code, 1, p.stderr)
        XCTAssertTrue(p.stderr.contains("Error: \(link) is a symlink"), p.stderr)
        XCTAssertEqual(Trust.bytes(victim), [1, 2, 3])
        unlink(link)
        XCTAssertEqual(E2E.backy(["-b", t.job, "purge"]).code, 0)
        XCTAssertEqual(E2E.sha256(E2E.backy(["-b", t.job, "restore", "-"]).stdout), t.sha[0])
    }

    /// Two jobs sharing one chunks/ (the second's is a symlink to the
    /// first's): purging the second must not remove the first's chunks.
    func testPurgeRefusesAStoreSharedWithAnotherJob() throws {
        let a = Trust.job(self, mib: 5)
        let d = E2E.tempDir(self, "other")
        let img = d + "/b.img", job = d + "/job"
        E2E.write(img, E2E.randomBytes(1 << 20, seed: Trust.seed &+ 5), at: 0)
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", img]).code, 0)
        try FileManager.default.removeItem(atPath: job + "/chunks")
        symlink(a.job + "/chunks", job + "/chunks")
        let before = Trust.chunkFiles(a.job)
        let p = E2E.backy(["-b", job, "purge"])
        XCTAssertEqual(p.code, 1, p.stderr)
        XCTAssertTrue(p.stderr.contains("Error: \(job)/chunks is a symlink: refusing"), p.stderr)
        XCTAssertEqual(Trust.chunkFiles(a.job), before, "the other job keeps its chunks")
        XCTAssertEqual(E2E.sha256(E2E.backy(["-b", a.job, "restore", "-"]).stdout), a.sha[0])
        let v = E2E.backy(["-b", job, "verify", "--sample", "100"])
        XCTAssertEqual(v.code, 1, v.stderr)
        XCTAssertTrue(v.stderr.contains("is a symlink: refusing"), v.stderr)
    }

    // MARK: verify -r reads every chunk (item 5)

    func testVerifyOfARevisionReadsChunksSharedWithVerifiedRevisions() throws {
        let t = Trust.job(self, mib: 6, tags: ["daily", "weekly"])
        let v1 = E2E.backy(["-b", t.job, "verify", "-r", t.revs[0]])
        XCTAssertEqual(v1.code, 0, v1.stderr)
        // Damage the chunk both revisions use (the first 4 MiB).
        let shared = Trust.chunkFiles(t.job).first { f in
            let hex = ((f as NSString).lastPathComponent as NSString).deletingPathExtension
            return mapNames(t.job + "/\(t.revs[0]).map").contains(hex) && mapNames(t.job + "/\(t.revs[1]).map").contains(hex)
        }!
        chmod(shared, 0o644)
        E2E.write(shared, [0x55, 0xAA], at: 100)
        let v2 = E2E.backy(["-b", t.job, "verify", "-r", t.revs[1]])
        XCTAssertEqual(v2.code, 1, "a bad chunk is never 'covered' by a revision verified earlier: \(v2.stderr)")
        XCTAssertTrue(v2.stderr.contains("Error: bad chunk \(((shared as NSString).lastPathComponent as NSString).deletingPathExtension)"), v2.stderr)
        let json = E2E.statusRevisions(E2E.backy(["-b", t.job, "status", "--json"]).stdout)
        XCTAssertEqual(json.map { $0["trust"] as! String }, ["distrusted", "distrusted"])
        // A healthy run says what it read and what it skipped.
        let t2 = Trust.job(self, mib: 5, tags: ["daily", "weekly"], seed: Trust.seed &+ 3)
        let ok = E2E.backy(["-b", t2.job, "verify"])
        XCTAssertEqual(ok.code, 0, ok.stderr)
        XCTAssertTrue(E2E.backy(["-b", t2.job, "distrust"]).code == 0)
        let both = E2E.backy(["-b", t2.job, "verify"])
        XCTAssertEqual(both.code, 0, both.stderr)
        XCTAssertTrue(both.stderr.contains("No problems found - marking as verified. (2 chunks read back (5.00 MiB))"), both.stderr)
        XCTAssertTrue(both.stderr.contains("No problems found - marking as verified. (1 chunks read back (1.00 MiB), 1 skipped: read back and found good earlier in this run)"), both.stderr)
    }

    /// The 32-byte chunk ids of a native map, as hex.
    func mapNames(_ path: String) -> Set<String> {
        let b = Trust.bytes(path)
        guard b.count >= 64 else { return [] }
        var out = Set<String>()
        for k in stride(from: 64, to: b.count, by: 32) {
            out.insert(b[k..<(k + 32)].map { String(format: "%02x", $0) }.joined())
        }
        return out
    }

    // MARK: stale temp files (item 6)

    func testLiveWritersTempFilesSurviveABackup() throws {
        let t = Trust.job(self, mib: 5)
        let live = getpid()
        var dead: Int32 = 0
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        dead = p.processIdentifier
        let keep = [".last.tmp-\(live)", ".last.rev.tmp-\(live)", "\(t.revs[0]).rev.tmp-\(live)-12345", "notes.tmp-later"]
        let drop = [".last.tmp-\(dead)", "\(t.revs[0]).rev.tmp-\(dead)-999"]
        for n in keep + drop { E2E.write(t.job + "/" + n, [1], at: 0) }
        XCTAssertEqual(E2E.backy(["-b", t.job, "backup", "daily"]).code, 0)
        for n in keep { XCTAssertTrue(FileManager.default.fileExists(atPath: t.job + "/" + n), "\(n) of a live writer (or not a temp file) stays") }
        for n in drop { XCTAssertFalse(FileManager.default.fileExists(atPath: t.job + "/" + n), "\(n) of a dead writer goes") }
    }

    /// A map whose revision is gone (a copy killed between map and
    /// revision) keeps its chunks only until the next backup removes it;
    /// a map that is a directory is left, with a warning, and the backup
    /// goes on.
    func testMapWithoutRevisionIsRemovedByTheNextBackup() throws {
        let t = Trust.job(self, mib: 9, tags: ["daily", "daily"])
        let orphan = Trust.newID(4242), odd = Trust.newID(4343)
        try FileManager.default.copyItem(atPath: t.job + "/\(t.revs[1]).map", toPath: t.job + "/\(orphan).map")
        XCTAssertEqual(E2E.backy(["-b", t.job, "forget", "-r", t.revs[1]]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", t.job, "purge"]).code, 0)
        try FileManager.default.createDirectory(atPath: t.job + "/\(odd).map", withIntermediateDirectories: false)
        // Chunks 0, 1, 2 of the first revision and 2' of the second, which
        // the orphan map still names.
        XCTAssertEqual(Trust.chunkFiles(t.job).count, 4)
        E2E.write(t.img, E2E.randomBytes(1 << 20, seed: Trust.seed &+ 99), at: 8 << 20)
        let b = E2E.backy(["-b", t.job, "backup", "daily"])
        XCTAssertEqual(b.code, 0, b.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: t.job + "/\(orphan).map"), "the orphan map is gone")
        XCTAssertTrue(FileManager.default.fileExists(atPath: t.job + "/\(odd).map"), "a directory is not removed")
        let log = try String(contentsOfFile: t.job + "/backy.log", encoding: .utf8)
        XCTAssertTrue(log.contains("\(orphan).map: its revision is gone"), log)
        XCTAssertTrue(log.contains("Cannot remove \(t.job)/\(odd).map"), log)
        // (purge refuses a map it cannot read, a directory included: item 3)
        try FileManager.default.removeItem(atPath: t.job + "/\(odd).map")
        XCTAssertEqual(E2E.backy(["-b", t.job, "purge"]).code, 0)
        // 0, 1, 2 and the new 2'': 2' went with the orphan map.
        XCTAssertEqual(Trust.chunkFiles(t.job).count, 4)
        let revs = E2E.revisionIDs(t.job)
        XCTAssertEqual(revs.count, 2)
        XCTAssertEqual(E2E.backy(["-b", t.job, "verify"]).code, 0)
        let out = t.dir + "/first.img"
        XCTAssertEqual(E2E.backy(["-b", t.job, "restore", "-r", t.revs[0], out]).code, 0)
        XCTAssertEqual(E2E.sha256(file: out), t.sha[0])
    }

    // MARK: purge reads only the head of a cowfile image (item 6)

    func testPurgeDoesNotReadCowfileImagesIntoMemory() throws {
        let d = E2E.tempDir(self, "cow")
        let job = d + "/job-cowfile"
        XCTAssertEqual(E2E.run("/bin/cp", ["-a", LegacyTests.fixtures + "/job-cowfile", job]).code, 0)
        let rev = LegacyTests.manifest.first { $0.job == "job-cowfile" }!.rev
        // Its raw image becomes 768 MiB (sparse, non-zero at the start).
        chmod(job + "/" + rev, 0o644)
        E2E.truncate(job + "/" + rev, 768 << 20)
        // One unused chunk file, so purge has something to decide.
        try FileManager.default.createDirectory(atPath: job + "/chunks/ab", withIntermediateDirectories: true)
        E2E.write(job + "/chunks/ab/" + String(repeating: "ab", count: 32) + ".chunk", [1, 2, 3], at: 0)
        let m = Trust.measure(["-b", job, "purge"])
        XCTAssertEqual(m.code, 0, m.stderr)
        XCTAssertEqual(m.stdout, "Purging: 1 chunks\n")
        print("purge of a job with a 768 MiB cowfile image: max RSS \(m.maxRSSKiB) KiB, \(String(format: "%.2f", m.seconds)) s")
        XCTAssertLessThan(m.maxRSSKiB, 200 * 1024, "purge reads the first bytes of a raw image, not all of it")
    }

    // MARK: corrupt maps and timestamps never trap (item 8)

    func testCorruptMapHeaderIsAnErrorNotATrap() throws {
        let t = Trust.job(self, mib: 5, tags: ["daily", "weekly"])
        let map = t.job + "/\(t.revs[0]).map"
        chmod(map, 0o644)
        // Image size 2^64 - 1 (and any count): arithmetic would overflow.
        E2E.write(map, [UInt8](repeating: 0xFF, count: 8), at: 16)
        for args in [["restore", "-r", t.revs[0], t.dir + "/out"], ["restore", "-r", t.revs[0], "-"],
                     ["verify", "-r", t.revs[0]], ["purge"], ["status"], ["status", "--json"]] {
            let m = Trust.measure(["-b", t.job] + args)
            XCTAssertEqual(m.signal, 0, "\(args): killed by signal \(m.signal): \(m.stderr)")
            if args[0] == "status" {
                XCTAssertEqual(m.code, 0, m.stderr)
                XCTAssertTrue(m.stdout.contains("damaged"), m.stdout)
            } else {
                XCTAssertEqual(m.code, 1, "\(args): \(m.stderr)")
                XCTAssertEqual(Trust.errorLines(m.stderr).count, 1, "\(args): \(m.stderr)")
            }
        }
        // Count and size consistent but enormous: still no trap, no allocation.
        E2E.write(map, [0, 0, 0, 0, 0, 0, 0, 0x40] + [0, 0, 0, 0, 0, 0x01, 0, 0], at: 16)
        let m = Trust.measure(["-b", t.job, "restore", "-r", t.revs[0], "-"])
        XCTAssertEqual(m.signal, 0, m.stderr)
        XCTAssertEqual(m.code, 1, m.stderr)
        XCTAssertLessThan(m.maxRSSKiB, 300 * 1024)
        XCTAssertEqual(E2E.sha256(E2E.backy(["-b", t.job, "restore", "-r", t.revs[1], "-"]).stdout), t.sha[1])
    }

    func testAbsurdTimestampsAreIgnoredNotATrap() throws {
        let t = Trust.job(self, mib: 5)
        let stamps = ["1e300", "1e18", "9223372036854775807", "-9223372036854775807", ".nan", "'99999-01-01 00:00:00'"]
        for (k, s) in stamps.enumerated() {
            let id = Trust.newID(k + 1)
            try Trust.cloneRevision(t.job, from: t.revs[0], to: id, timestamp: s)
        }
        for args in [["status"], ["status", "--json"], ["restore", "-"], ["find"], ["purge"], ["verify", "-r", "0"]] {
            let m = Trust.measure(["-b", t.job] + args)
            XCTAssertEqual(m.signal, 0, "\(args): killed by signal \(m.signal): \(m.stderr)")
            XCTAssertEqual(m.code, 0, "\(args): \(m.stderr)")
            if args[0] != "purge" {
                XCTAssertTrue(m.stderr.contains("ignoring \(stamps.count) revision file(s)"), "\(args): \(m.stderr)")
            }
        }
        let server = try NBDServerProcess(job: t.job, test: self)
        let list = E2E.run("/usr/bin/nbdinfo", ["--list", server.url])
        XCTAssertEqual(list.code, 0, list.stderr + server.log)
        XCTAssertTrue(list.out.contains(t.revs[0]), list.out)
    }

    func testAbsurdStatsNeverTrap() throws {
        let t = Trust.job(self, mib: 5)
        for (k, v) in ["9223372036854775807", "9223372036854775807", "-9223372036854775808", "1e308", "-0"].enumerated() {
            let id = Trust.newID(20 + k)
            try Trust.cloneRevision(t.job, from: t.revs[0], to: id, timestamp: "2021-01-0\(k + 1) 00:00:00+00:00")
            var text = try String(contentsOfFile: t.job + "/\(id).rev", encoding: .utf8)
            text = text.replacingOccurrences(of: "bytes_written: ", with: "bytes_written: \(v), old_bytes_written: ")
            try text.write(toFile: t.job + "/\(id).rev", atomically: true, encoding: .utf8)
        }
        for args in [["status"], ["status", "--json"]] {
            let m = Trust.measure(["-b", t.job] + args)
            XCTAssertEqual(m.signal, 0, "\(args): killed by signal \(m.signal): \(m.stderr)")
            XCTAssertEqual(m.code, 0, "\(args): \(m.stderr)")
            XCTAssertEqual(m.stderr, "", "\(args)")
        }
    }

    func testFutureDatedRevisionIsFlaggedAndNeverLatest() throws {
        let t = Trust.job(self, mib: 5)
        let future = Trust.newID(99)
        try Trust.cloneRevision(t.job, from: t.revs[0], to: future, timestamp: "2099-01-01 00:00:00+00:00")
        // Make the future one's content differ: point it at the map of a
        // second backup of other data.
        E2E.write(t.img, E2E.randomBytes(5 << 20, seed: Trust.seed &+ 31), at: 0)
        XCTAssertEqual(E2E.backy(["-b", t.job, "backup", "daily"]).code, 0)
        let ids = E2E.revisionIDs(t.job)
        XCTAssertEqual(ids.count, 3)
        XCTAssertEqual(ids.last, future, "sorted by time, it is the newest")
        let second = ids[1]
        XCTAssertEqual(E2E.backy(["-b", t.job, "find"]).out, t.job + "/\(second).map\n", "latest is not the future one")
        XCTAssertEqual(E2E.backy(["-b", t.job, "find", "-r", "0"]).out, t.job + "/\(second).map\n")
        XCTAssertEqual(E2E.backy(["-b", t.job, "find", "-r", "daily"]).out, t.job + "/\(second).map\n")
        XCTAssertEqual(E2E.backy(["-b", t.job, "find", "-r", future]).out, t.job + "/\(future).map\n", "by id it is found")
        XCTAssertEqual(E2E.sha256(E2E.backy(["-b", t.job, "restore", "-"]).stdout), E2E.sha256(file: t.img))
        let st = E2E.backy(["-b", t.job, "status"])
        XCTAssertTrue(st.out.contains("Revision \(future) is dated in the future (2099-01-01 00:00:00 UTC)"), st.out)
        let json = E2E.statusRevisions(E2E.backy(["-b", t.job, "status", "--json"]).stdout)
        XCTAssertEqual(json.map { $0["future_dated"] as? Bool }, [false, false, true])
        // The next backup's parent is the newest real revision.
        XCTAssertEqual(E2E.backy(["-b", t.job, "backup", "daily"]).code, 0)
        let now = E2E.revisionIDs(t.job)
        XCTAssertEqual(now.count, 4)
        let rev = (try? String(contentsOfFile: t.job + "/\(now.dropLast().last ?? "").rev", encoding: .utf8)) ?? ""
        XCTAssertTrue(rev.contains("parent: \(second)"), rev)
    }

    // MARK: YAML bombs and oversized metadata (item 9)

    static let bomb: String = {
        var s = "a: &a [x, x, x, x, x, x, x, x, x]\n"
        var prev = "a"
        for k in 0..<6 {
            let n = "b\(k)"
            s += "\(n): &\(n) [*\(prev), *\(prev), *\(prev), *\(prev), *\(prev), *\(prev), *\(prev), *\(prev), *\(prev)]\n"
            prev = n
        }
        return s
    }()

    func testYAMLAliasesAreRefusedBeforeTheyExpand() throws {
        let t = Trust.job(self, mib: 5)
        // In a revision file: status ignores it at once.
        let id = Trust.newID(5)
        try (TrustStoreTests.bomb + "uuid: \(id)\ntimestamp: 2020-01-01 00:00:00\nstats: {duration: 1}\n")
            .write(toFile: t.job + "/\(id).rev", atomically: true, encoding: .utf8)
        var m = Trust.measure(["-b", t.job, "status"], timeout: 30)
        XCTAssertEqual(m.code, 0, m.stderr)
        XCTAssertTrue(m.stderr.contains("YAML anchors (&name) are not supported"), m.stderr)
        XCTAssertLessThan(m.seconds, 5)
        XCTAssertLessThan(m.maxRSSKiB, 200 * 1024)
        // In the job's config: the backup fails with one line.
        chmod(t.job + "/config", 0o644)
        try ("filename: \(t.img)\ntype: file\n" + TrustStoreTests.bomb).write(toFile: t.job + "/config", atomically: true, encoding: .utf8)
        m = Trust.measure(["-b", t.job, "backup", "daily"], timeout: 30)
        XCTAssertEqual(m.code, 1, m.stderr)
        XCTAssertEqual(Trust.errorLines(m.stderr), ["Error: \(t.job)/config: line 3: YAML anchors (&name) are not supported"])
        XCTAssertLessThan(m.seconds, 5)
        // In backy.conf: check and the scheduler refuse it.
        let conf = t.dir + "/backy.conf"
        try ("global: {base-dir: \(t.dir)}\n" + TrustStoreTests.bomb).write(toFile: conf, atomically: true, encoding: .utf8)
        for args in [["check", "-c", conf], ["scheduler", "-c", conf]] {
            m = Trust.measure(args, timeout: 30)
            // check: UNKNOWN (3) on stdout, for Nagios; the scheduler: exit 1.
            let check = args[0] == "check"
            XCTAssertEqual(m.code, check ? 3 : 1, "\(args): \(m.stderr)")
            XCTAssertTrue((check ? m.stdout : m.stderr).contains("\(check ? "UNKNOWN" : "Error"): \(conf): line 2: YAML anchors (&name) are not supported"), m.stdout + m.stderr)
            XCTAssertLessThan(m.seconds, 5)
            XCTAssertLessThan(m.maxRSSKiB, 200 * 1024)
        }
        // Nesting deeper than any backy file: refused, not a stack overflow.
        try (String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000) + "\n")
            .write(toFile: conf, atomically: true, encoding: .utf8)
        m = Trust.measure(["check", "-c", conf], timeout: 30)
        XCTAssertEqual(m.signal, 0, m.stderr)
        XCTAssertEqual(m.code, 3, m.stderr)
        XCTAssertTrue(m.stdout.contains("UNKNOWN: \(conf): line 1: collections nested deeper than 64 levels"), m.stdout)
        try (String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "\n").write(toFile: conf, atomically: true, encoding: .utf8)
        m = Trust.measure(["check", "-c", conf], timeout: 30)
        XCTAssertEqual(m.code, 3, m.stderr)
        XCTAssertTrue(m.stdout.contains("UNKNOWN: \(conf): line 1: collections nested deeper than 64 levels"), m.stdout)
    }

    func testOversizedMetadataFilesAreRefused() throws {
        let t = Trust.job(self, mib: 5)
        let id = Trust.newID(6)
        let big = "uuid: \(id)\ntimestamp: 2020-01-01 00:00:00\nstats: {duration: 1}\npad: '" + String(repeating: "x", count: 2 << 20) + "'\n"
        try big.write(toFile: t.job + "/\(id).rev", atomically: true, encoding: .utf8)
        let st = E2E.backy(["-b", t.job, "status"])
        XCTAssertEqual(st.code, 0, st.stderr)
        XCTAssertTrue(st.stderr.contains("is larger than 64.00 kiB (65536 bytes)"), st.stderr)
        // A revision file that is a FIFO does not block anyone.
        mkfifo(t.job + "/\(Trust.newID(7)).rev", 0o644)
        let m = Trust.measure(["-b", t.job, "status"], timeout: 20)
        XCTAssertEqual(m.code, 0, m.stderr)
        XCTAssertLessThan(m.seconds, 10)
    }
}

/// FileManager's isDirectory, without following a final symlink.
func isRealDirectory(_ p: String) -> Bool {
    var st = stat()
    return lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}
