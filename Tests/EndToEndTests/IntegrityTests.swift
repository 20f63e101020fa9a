// IntegrityTests: distrust, verify, quarantine and healing, best-effort
// restore, forget, and the fault suite: injected bit flips, truncations and
// deletions; purge beside a stopped backup and looping beside backups and
// restores; kill -9 of purge and verify. Random choices print their seed
// (BACKY_TEST_SEED replays them). Counts grow with BACKY_TORTURE=1
// (bench/torture).
import Foundation
import TestSupport
import XCTest

final class IntegrityTests: XCTestCase {
    static var torture: Bool { ProcessInfo.processInfo.environment["BACKY_TORTURE"] == "1" }

    func makeJob(_ d: String, mib: Int = 24, seed: UInt64 = 1) -> (img: String, job: String) {
        let img = d + "/disk.img", job = d + "/job"
        E2E.write(img, E2E.randomBytes(mib * 1024 * 1024, seed: seed), at: 0)
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", img]).code, 0)
        return (img, job)
    }

    func revisions(_ job: String) -> [[String: Any]] { E2E.revisions(job) }

    func trust(_ job: String) -> [String] { revisions(job).map { $0["trust"] as! String } }

    func chunkFiles(_ job: String) -> [String] {
        E2E.files(in: job + "/chunks", suffix: ".chunk").filter { !$0.contains("/.tmp/") }.sorted()
    }

    func testDistrustForcesRewriteAndVerifyResolves() throws {
        let d = E2E.tempDir(self)
        let (img, job) = makeJob(d)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        // Distrust by date range (today), then all.
        let today = String(ISO8601DateFormatter().string(from: Date()).prefix(10))
        XCTAssertEqual(E2E.backy(["-b", job, "distrust", "-f", today, "-u", today]).code, 0)
        XCTAssertEqual(trust(job), ["distrusted", "distrusted"])
        XCTAssertEqual(E2E.backy(["-b", job, "distrust", "-f", "2001-01-01", "-u", "2001-01-02"]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "distrust", "-f", "not-a-date"]).code, 2)
        // Corrupt a chunk file on disk: the next backup rewrites it anyway.
        let victim = chunkFiles(job)[0]
        chmod(victim, 0o644)
        E2E.write(victim, [0xff, 0xee], at: 200)
        let r = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("Noticed untrusted revisions - forcing full writes."), r.stderr)
        XCTAssertTrue(r.stderr.contains("Found inconsistent revision(s). Performing single verification."), r.stderr)
        let revs = revisions(job)
        XCTAssertEqual((revs[2]["stats"] as! [String: Any])["chunks_written"] as? Int, 6, "every chunk rewritten")
        // The newest distrusted revision was verified after the backup.
        XCTAssertEqual(trust(job), ["distrusted", "verified", "trusted"])
        // verify without -r takes the rest.
        let v = E2E.backy(["-b", job, "verify"])
        XCTAssertEqual(v.code, 0, v.stderr)
        XCTAssertEqual(trust(job), ["verified", "verified", "trusted"])
        let out = d + "/out"
        XCTAssertEqual(E2E.backy(["-b", job, "restore", "-r", "2", out]).code, 0)
        XCTAssertEqual(E2E.sha256(file: out), E2E.sha256(file: img))
    }

    func testBadChunkIsQuarantinedReportedAndHealed() throws {
        let d = E2E.tempDir(self)
        let (img, job) = makeJob(d)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "weekly"]).code, 0)
        let victim = chunkFiles(job)[2]
        let name = ((victim as NSString).lastPathComponent as NSString).deletingPathExtension
        // Where the chunk sits in the image, from the map: the damage report
        // must name exactly that range.
        let map = E2E.mapChunks(job, try XCTUnwrap(E2E.revisionIDs(job).last))
        XCTAssertEqual(map.count, 6)
        let k = try XCTUnwrap(map.firstIndex(of: name))
        XCTAssertEqual(map.filter { $0 == name }.count, 1)
        chmod(victim, 0o644)
        E2E.write(victim, [0x00, 0x01, 0x02], at: 4000)
        let v = E2E.backy(["-b", job, "verify", "-r", "0"])
        XCTAssertEqual(v.code, 1, v.stderr)
        let lines = v.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: bad chunk ") }
        XCTAssertEqual(lines.count, 1, v.stderr)
        XCTAssertTrue(lines.first?.contains(name) == true, v.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: victim), "moved away, not deleted")
        let q = try FileManager.default.contentsOfDirectory(atPath: job + "/quarantine")
        XCTAssertEqual(q.filter { $0.hasSuffix(".chunk") }.count, 1)
        let reportName = try XCTUnwrap(q.first { $0.hasSuffix(".json") }, "a quarantine report")
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: job + "/quarantine/" + reportName))) as? [String: Any])
        XCTAssertEqual(report["chunk"] as? String, name)
        XCTAssertEqual(report["expected_sha256"] as? String, name)
        XCTAssertNotNil(report["actual_sha256"] as? String)
        XCTAssertEqual((report["revisions"] as? [String])?.count, 2)
        XCTAssertEqual(trust(job), ["distrusted", "distrusted"], "every revision using the chunk")
        XCTAssertTrue(E2E.backy(["-b", job, "status"]).out.contains("1 chunk(s) in quarantine"))
        // Restore stops; best-effort fills zeros, reports, exits 2.
        XCTAssertEqual(E2E.backy(["-b", job, "restore", d + "/x"]).code, 1)
        let be = E2E.backy(["-b", job, "restore", "--best-effort", "--damage-report", d + "/damage.json", d + "/x"])
        XCTAssertEqual(be.code, 2, be.stderr)
        let dmg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: d + "/damage.json"))) as! [String: Any]
        let ranges = dmg["damaged_ranges"] as? [[String: Any]] ?? []
        XCTAssertEqual(ranges.count, 1)
        guard ranges.count == 1 else { return }
        let mib4 = 4 * 1024 * 1024
        XCTAssertEqual(ranges[0]["chunk"] as? String, name)
        XCTAssertEqual(ranges[0]["chunk_index"] as? Int, k)
        XCTAssertEqual(ranges[0]["offset"] as? Int, k * mib4)
        XCTAssertEqual(ranges[0]["length"] as? Int, mib4)
        XCTAssertEqual(ranges[0]["end"] as? Int, (k + 1) * mib4)
        XCTAssertEqual(dmg["damaged_bytes"] as? Int, mib4)
        XCTAssertTrue(be.stderr.contains("Chunk \(name) at image offset \(k * mib4) is unreadable"), be.stderr)
        // The restored image: zeros exactly there, the image everywhere else.
        var want = try Data(contentsOf: URL(fileURLWithPath: img))
        want.replaceSubrange((k * mib4)..<((k + 1) * mib4), with: Data(count: mib4))
        XCTAssertEqual(E2E.sha256(file: d + "/x"), E2E.sha256(want))
        // The next backup rewrites the chunk from the source; verify then trusts again.
        let b = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(b.code, 0, b.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: victim), "healed")
        XCTAssertEqual(E2E.backy(["-b", job, "verify"]).code, 0)
        XCTAssertEqual(trust(job), ["verified", "verified", "trusted"])
        for spec in ["0", "1", "2"] {
            let r = E2E.backy(["-b", job, "restore", "-r", spec, "-"])
            XCTAssertEqual(r.code, 0, r.stderr)
            XCTAssertEqual(E2E.sha256(r.stdout), E2E.sha256(file: img))
        }
    }

    func testInjectedFaultsAreAllFoundByVerify() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        let faults = IntegrityTests.torture ? 60 : 9
        let mib = IntegrityTests.torture ? 264 : 60
        E2E.write(img, E2E.randomBytes(mib * 1024 * 1024, seed: 5), at: 0)
        var rng = E2E.rng(self)
        // Half compressible so both codecs are hit.
        for k in 0..<(mib / 8) {
            let line = "lorem ipsum \(k) dolor sit amet \(UInt32.random(in: 0...UInt32.max, using: &rng)) consectetur\n"
            E2E.write(img, Array(String(repeating: line, count: 4 * 1024 * 1024 / line.utf8.count).utf8), at: UInt64(k * 2 + 1) * 4 * 1024 * 1024)
        }
        E2E.backy(["-b", job, "init", "file", img])
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        var files = chunkFiles(job)
        files.shuffle(using: &rng)
        var injected: [String: String] = [:]
        XCTAssertGreaterThanOrEqual(files.count, faults)
        for (k, f) in files.prefix(faults).enumerated() {
            let name = ((f as NSString).lastPathComponent as NSString).deletingPathExtension
            chmod(f, 0o644)
            let size = (try FileManager.default.attributesOfItem(atPath: f)[.size] as! NSNumber).intValue
            switch k % 3 {
            case 0:  // flip one bit somewhere (that changes the data)
                let good = try Data(contentsOf: URL(fileURLWithPath: f))
                for _ in 0..<100 {
                    var bad = good
                    let off = Int.random(in: 0..<size, using: &rng)
                    bad[off] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
                    try bad.write(to: URL(fileURLWithPath: f))
                    if off < 16 || good[5] == 0 || !decodesTo(name, f) { break }
                    // A zstd bit that does not change the decoded data (the
                    // window size, say): the data is intact, pick another.
                }
                injected[name] = "flip"
            case 1:
                E2E.truncate(f, UInt64.random(in: 0..<UInt64(size), using: &rng))
                injected[name] = "truncate"
            default:
                try FileManager.default.removeItem(atPath: f)
                injected[name] = "delete"
            }
        }
        let v = E2E.backy(["-b", job, "verify", "--sample", "100"])
        XCTAssertEqual(v.code, 1)
        let found = Set(v.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: bad chunk ") }.map { String($0.dropFirst(17).prefix(64)) })
        XCTAssertEqual(found, Set(injected.keys), "100 % of injected faults found")
        let reports = try FileManager.default.contentsOfDirectory(atPath: job + "/quarantine").filter { $0.hasSuffix(".json") }
        XCTAssertEqual(reports.count, injected.count, "each reported")
        XCTAssertEqual(trust(job), ["distrusted"])
        let kinds = Dictionary(grouping: injected.values, by: { $0 }).map { "\($0.value.count) \($0.key)" }.sorted().joined(separator: ", ")
        print("fault injection: \(injected.count) faults (\(kinds)) injected, \(found.count) found by verify, \(reports.count) reported")
    }

    /// Whether the zstd payload of chunk file `f` still decodes (by the zstd
    /// command, not by backy) to bytes whose SHA-256 is `name`.
    func decodesTo(_ name: String, _ f: String) -> Bool {
        let r = E2E.run("/bin/sh", ["-c", "tail -c +17 '\(f)' | zstd -dcq 2>/dev/null | sha256sum"])
        return r.out.hasPrefix(name)
    }

    func testSamplingCoversTheStoreLeastRecentlyVerifiedFirst() throws {
        let d = E2E.tempDir(self)
        let (_, job) = makeJob(d, mib: 40)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        XCTAssertTrue(E2E.backy(["-b", job, "status"]).out.contains("10 chunks; 10 never verified at rest"))
        // 25 % per run: 3 + 3 + 3 + 1 chunks cover all 10 in four runs.
        for run in 1...4 {
            let v = E2E.backy(["-b", job, "verify", "--sample", "25"])
            XCTAssertEqual(v.code, 0, v.stderr)
            let st = E2E.backy(["-b", job, "status"]).out
            if run < 4 {
                XCTAssertTrue(st.contains("\(max(0, 10 - 3 * run)) never verified at rest"), st)
            } else {
                XCTAssertTrue(st.contains("all verified at rest"), st)
            }
        }
        // A zero budget stops at once.
        let v = E2E.backy(["-b", job, "verify", "--sample", "100", "--budget", "0.000001"])
        XCTAssertEqual(v.code, 0)
        XCTAssertTrue(v.stderr.contains("stopped by the time budget"), v.stderr)
    }

    func testForget() throws {
        let d = E2E.tempDir(self)
        let (img, job) = makeJob(d)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        E2E.write(img, E2E.randomBytes(24 * 1024 * 1024, seed: 99), at: 0)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let ids = E2E.revisionIDs(job)
        let before = chunkFiles(job).count
        XCTAssertEqual(before, 12)
        let f = E2E.backy(["-b", job, "forget", "-r", ids[0]])
        XCTAssertEqual(f.code, 0, f.stderr)
        XCTAssertEqual(E2E.revisionIDs(job), [ids[1]])
        XCTAssertEqual(chunkFiles(job).count, 12, "chunks stay until purge")
        let p = E2E.backy(["-b", job, "purge"])
        XCTAssertEqual(p.code, 0, p.stderr)
        XCTAssertEqual(p.out, "Purging: 6 chunks\n")
        XCTAssertEqual(chunkFiles(job).count, 6)
        XCTAssertEqual(E2E.backy(["-b", job, "forget", "-r", "nosuch"]).code, 1)
        let r = E2E.backy(["-b", job, "restore", "-"])
        XCTAssertEqual(E2E.sha256(r.stdout), E2E.sha256(file: img))
    }

    /// Purge in a loop while 20 backups (whose chunks come and go) and
    /// restores run: no chunk goes missing, every restore is bit-exact. The
    /// figures are counted: restores, purges and the chunks they removed
    /// must be > 0, and the revisions left are exactly the two newest.
    func testPurgeLoopBesideBackupsAndRestores() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        let mib = 16
        let backups = 20
        var rng = E2E.rng(self)
        // Two variants per 4 MiB block; each backup picks one per block, so
        // chunks become unreferenced (after forget) and are wanted again.
        let variants = (0..<2).map { v in (0..<(mib / 4)).map { b in E2E.randomBytes(4 * 1024 * 1024, seed: UInt64(1000 + v * 100 + b)) } }
        E2E.write(img, variants[0].flatMap { $0 }, at: 0)
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", img]).code, 0)
        let expected = Locked<[String: String]>([:])
        let stop = Locked(false)
        let purges = Locked(0), purged = Locked(0), restores = Locked(0), failures = Locked<[String]>([])
        let purgeThread = Thread {
            while !stop.get {
                let r = E2E.backy(["-b", job, "purge"])
                if r.code != 0 { failures.with { $0.append("purge: \(r.stderr)") } }
                if let n = r.out.split(separator: " ").dropFirst().first.flatMap({ Int($0) }), r.out.hasPrefix("Purging: ") {
                    purged.with { $0 += n }
                } else if r.code == 0 && !r.out.hasPrefix("Failed to get exclusive lock") {
                    failures.with { $0.append("purge printed \(r.out.debugDescription)") }
                }
                purges.with { $0 += 1 }
            }
        }
        purgeThread.start()
        let restoreSeed = rng.next()
        let restoreThread = Thread {
            var restoreRng = XorShift(seed: restoreSeed)
            while !stop.get {
                let known = expected.get.sorted { $0.key < $1.key }
                guard let (id, hash) = known.randomElement(using: &restoreRng) else { usleep(20_000); continue }
                let r = E2E.backy(["-b", job, "restore", "-r", id, "-"])
                if r.code != 0 {
                    // The revision may have been forgotten meanwhile.
                    if expected.get[id] != nil { failures.with { $0.append("restore \(id): \(r.stderr)") } }
                } else if E2E.sha256(r.stdout) != hash {
                    failures.with { $0.append("restore \(id) differs") }
                }
                restores.with { $0 += 1 }
            }
        }
        restoreThread.start()
        var made: [String] = []   // ids of the backups that succeeded, in order
        for i in 0..<backups {
            let pick = (0..<(mib / 4)).map { _ in Int.random(in: 0...1, using: &rng) }
            E2E.write(img, pick.enumerated().flatMap { variants[$0.element][$0.offset] }, at: 0)
            let hash = E2E.sha256(file: img)
            let before = Set(E2E.revisionIDs(job))
            let b = E2E.backy(["-b", job, "backup", "daily"])
            XCTAssertEqual(b.code, 0, "backup \(i): \(b.stderr)")
            let new = E2E.revisionIDs(job).filter { !before.contains($0) }
            // Only a backup that exited 0 with exactly one new revision
            // records a hash to check.
            if b.code == 0 && new.count == 1 {
                expected.with { $0[new[0]] = hash }
                made.append(new[0])
            } else {
                XCTFail("backup \(i): exit \(b.code), new revisions \(new)")
            }
            // Forget all but the two newest, so their chunks become garbage.
            let ids = E2E.revisionIDs(job)
            for old in ids.dropLast(2) {
                expected.with { $0[old] = nil }
                XCTAssertEqual(E2E.backy(["-b", job, "forget", "-r", old]).code, 0)
            }
        }
        stop.with { $0 = true }
        while purgeThread.isExecuting || restoreThread.isExecuting { usleep(50_000) }
        XCTAssertEqual(failures.get, [])
        XCTAssertEqual(made.count, backups, "every backup made one revision")
        XCTAssertEqual(E2E.revisionIDs(job), Array(made.suffix(2)), "the two newest revisions remain")
        XCTAssertEqual(Set(expected.get.keys), Set(made.suffix(2)))
        XCTAssertGreaterThan(restores.get, 0, "restores ran beside the backups")
        XCTAssertGreaterThan(purges.get, 0)
        XCTAssertGreaterThan(purged.get, 0, "purge removed chunks of forgotten revisions")
        // Nothing referenced is missing: counted from the maps, then by verify.
        var missing = 0
        for id in made.suffix(2) {
            for c in Set(E2E.mapChunks(job, id)) where c != String(repeating: "0", count: 64) {
                if !FileManager.default.fileExists(atPath: job + "/chunks/" + c.prefix(2) + "/" + c + ".chunk") { missing += 1 }
            }
        }
        XCTAssertEqual(missing, 0, "chunk files the remaining revisions need")
        let v = E2E.backy(["-b", job, "verify", "--sample", "100"])
        XCTAssertEqual(v.code, 0, v.stderr)
        var checked = 0
        for (id, hash) in expected.get {
            let r = E2E.backy(["-b", job, "restore", "-r", id, "-"])
            XCTAssertEqual(r.code, 0, r.stderr)
            XCTAssertEqual(E2E.sha256(r.stdout), hash)
            if r.code == 0 && E2E.sha256(r.stdout) == hash { checked += 1 }
        }
        XCTAssertEqual(checked, 2)
        print("purge beside backups: \(made.count) backups, \(purges.get) purges removed \(purged.get) chunks, \(restores.get) restores, \(failures.get.count) failures, \(missing) missing chunks, \(checked) revisions bit-exact at the end")
    }

    /// A backup stopped (SIGSTOP) after it pinned chunks it found in the
    /// store — garbage of a forgotten revision: purge keeps exactly those
    /// chunks, and the backup, continued, completes bit-exact.
    func testPurgeKeepsChunksPinnedByAStoppedBackup() throws {
        let d = E2E.tempDir(self)
        let (img, job) = makeJob(d, mib: 120, seed: 31)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let first = E2E.revisionIDs(job)
        XCTAssertEqual(first.count, 1)
        XCTAssertEqual(E2E.backy(["-b", job, "forget", "-r", first[0]]).code, 0)
        let garbage = Set(chunkFiles(job).map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension })
        XCTAssertEqual(garbage.count, 30, "every chunk is garbage now")

        let p = Process()
        p.executableURL = URL(fileURLWithPath: E2E.binary)
        p.arguments = ["-b", job, "backup", "daily"]
        p.environment = ProcessInfo.processInfo.environment.merging(["BACKY_THREADS": "1"]) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        // Stop it once its pin file names a chunk, outside the gate (a
        // session holds the gate shared only while it pins).
        let pins = job + "/.pins"
        func pinned() -> [String] {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: pins)) ?? []).filter { $0.hasSuffix(".pin") }
            return files.flatMap { f -> [String] in
                let b = [UInt8]((FileManager.default.contents(atPath: pins + "/" + f)) ?? Data())
                return stride(from: 0, to: b.count / 32 * 32, by: 32).map { k in b[k..<(k + 32)].map { String(format: "%02x", $0) }.joined() }
            }
        }
        var stopped = false
        XCTAssertTrue(waitUntil(timeout: 30, poll: 0.002) {
            guard p.isRunning, pinned().count >= 3 else { return false }
            kill(p.processIdentifier, SIGSTOP)
            let fd = open(pins + "/gate", O_RDWR)
            defer { close(fd) }
            if fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 {
                flock(fd, LOCK_UN)
                stopped = true
                return true
            }
            kill(p.processIdentifier, SIGCONT)
            return false
        }, "the backup pinned chunks")
        XCTAssertTrue(stopped)
        let held = Set(pinned()).intersection(garbage)
        XCTAssertFalse(held.isEmpty, "the stopped backup relies on chunks that were garbage")

        let purge = E2E.backy(["-b", job, "purge"])
        XCTAssertEqual(purge.code, 0, purge.stderr)
        let left = Set(chunkFiles(job).map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension })
        XCTAssertEqual(held.subtracting(left), [], "purge removed chunks a running backup pinned")
        XCTAssertEqual(purge.out, "Purging: \(garbage.count - garbage.intersection(left).count) chunks\n")

        kill(p.processIdentifier, SIGCONT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "the continued backup completes")
        let r = E2E.backy(["-b", job, "restore", "-"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(E2E.sha256(r.stdout), E2E.sha256(file: img))
        XCTAssertEqual(E2E.backy(["-b", job, "verify", "--sample", "100"]).code, 0)
        print("purge beside a stopped backup: \(held.intersection(left).count) of \(held.count) pinned garbage chunks kept, \(garbage.subtracting(left).count) others removed")
    }

    /// kill -9 of purge and verify at random moments never hurts a revision.
    func testKill9DuringPurgeAndVerify() throws {
        let d = E2E.tempDir(self)
        let (img, job) = makeJob(d, mib: 40)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let hash = E2E.sha256(file: img)
        let kills = IntegrityTests.torture ? 100 : 26
        var rng = E2E.rng(self)
        var killedPurge = 0, killedVerify = 0
        var round = 0
        while killedPurge + killedVerify < kills && round < 4 * kills {
            defer { round += 1 }
            // Make garbage for purge: a backup of changed data, then forget it.
            E2E.write(img, E2E.randomBytes(40 * 1024 * 1024, seed: UInt64(500 + round)), at: 0)
            XCTAssertEqual(E2E.backy(["-b", job, "backup", "tmp"]).code, 0)
            XCTAssertEqual(E2E.backy(["-b", job, "forget", "-r", "tmp"]).code, 0)
            E2E.write(img, E2E.randomBytes(40 * 1024 * 1024, seed: 1), at: 0)
            let isPurge = round % 2 == 0
            let p = Process()
            p.executableURL = URL(fileURLWithPath: E2E.binary)
            p.arguments = ["-b", job] + (isPurge ? ["purge"] : ["verify", "--sample", "100"])
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t.random(in: 0...100_000, using: &rng))
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                if isPurge { killedPurge += 1 } else { killedVerify += 1 }
            }
            p.waitUntilExit()
            let r = E2E.backy(["-b", job, "restore", "-r", "daily", "-"])
            XCTAssertEqual(r.code, 0, r.stderr)
            XCTAssertEqual(E2E.sha256(r.stdout), hash, "round \(round)")
        }
        XCTAssertEqual(E2E.backy(["-b", job, "purge"]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "verify", "--sample", "100"]).code, 0)
        XCTAssertEqual(chunkFiles(job).count, 10, "garbage gone, nothing more")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job + "/.pins").filter { $0 != "gate" }, [], "no stale pins")
        XCTAssertGreaterThanOrEqual(killedPurge + killedVerify, kills)
        print("kill -9: \(killedPurge) purges and \(killedVerify) verifies killed in \(round) rounds; the revision stayed bit-exact")
    }
}

/// A tiny lock-protected box for test threads.
final class Locked<T> {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func with<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
    var get: T { with { $0 } }
}

// @unchecked Sendable: `value` is read and changed only inside `with`, under `lock` (Sendable values only).
extension Locked: @unchecked Sendable where T: Sendable {}
