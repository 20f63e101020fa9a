// RadosCopyTests: `backy copy --to STORE` and `backy set-store STORE` against
// the real test cluster of RadosStoreTests: directory → RADOS, RADOS →
// directory, RADOS → another namespace, each revision restored from the
// target bit-exact (sha256 against the image it was taken from) with its id,
// timestamp, tags and trust; a second run copies nothing; a copy killed
// (SIGKILL) at random moments is finished by the next run; set-store then
// backup and restore work; backy 2.4 revisions are refused with one line.
import Foundation
import TestSupport
import XCTest

extension RadosStoreTests {
    /// What must survive a copy, per revision.
    func identity(_ job: String) -> [String] {
        revisions(job).filter { ($0["complete"] as? Bool) == true }.map {
            "\($0["uuid"] ?? "") \($0["timestamp"] ?? "") \(($0["tags"] as? [String]) ?? []) \($0["trust"] ?? "") \($0["parent"] ?? "")"
        }
    }

    func errorLines(_ r: RunResult) -> [Substring] { r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: ") } }

    /// A directory job with three revisions (full, two differentials, one
    /// distrusted) is copied into a namespace: attached there, every revision
    /// restores bit-exact with the same id, timestamp, tags and trust; a
    /// second copy writes nothing; set-store is refused for a namespace
    /// that lacks revisions, then switches to the copy, after which backup
    /// and restore work from RADOS.
    func testCopyDirectoryJobIntoRadosThenSetStore() throws {
        let d = E2E.tempDir(self, "copy-dir-rados")
        let s = seed()
        let img = d + "/disk.img"
        makeImage(img, chunks: 6, seed: s)
        let job = d + "/job"
        backy(["-b", job, "init", "file", img])
        var want: [String] = []
        for i in 0..<3 {
            if i > 0 { E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ UInt64(100 + i)), at: UInt64(i * 4 * RadosStoreTests.mib)) }
            backy(["-b", job, "backup", i == 2 ? "weekly" : "daily"])
            want.append(E2E.sha256(file: img))
        }
        let ids = revisionIDs(job)
        XCTAssertEqual(ids.count, 3)
        backy(["-b", job, "distrust", "-r", ids[1]])
        let ns = namespace()
        let store = "rados:\(RadosStoreTests.pool)/\(ns)"
        // set-store to a namespace without a job is refused.
        let early = backy(["-b", job, "set-store", store], expect: 1)
        XCTAssertEqual(errorLines(early).count, 1, early.stderr)
        XCTAssertTrue(early.stderr.contains("holds no backy job"), early.stderr)

        let c = backy(["-b", job, "copy", "--to", store])
        XCTAssertTrue(c.out.contains("Copied 3 revisions to \(store)"), c.out)
        // 5 distinct non-zero chunks in the first image, one new in each
        // differential (chunk 1; chunk 2 was a zero chunk, now random).
        XCTAssertTrue(c.out.contains("7 chunks written and read back"), c.out)
        let chunks = chunkObjects(ns)
        XCTAssertEqual(chunks.count, 7)
        let attached = d + "/attached"
        backy(["-b", attached, "init", "--store", store, "file", img])
        XCTAssertEqual(identity(attached), identity(job))
        XCTAssertEqual(revisions(attached).map { $0["trust"] as? String }, ["trusted", "distrusted", "trusted"])
        for (i, id) in ids.enumerated() { XCTAssertEqual(restoredSHA(attached, id, dir: d), want[i], id) }

        // Idempotent: nothing copied, nothing written.
        let again = backy(["-b", job, "copy", "--to", store])
        XCTAssertTrue(again.out.contains("Copied 0 revisions") && again.out.contains("3 revisions there already"), again.out)
        XCTAssertEqual(chunkObjects(ns), chunks)

        // set-store: refused while the target lacks a revision, unless it has all.
        E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ 200), at: 0)
        backy(["-b", job, "backup", "daily"])
        want.append(E2E.sha256(file: img))
        let lacks = backy(["-b", job, "set-store", store], expect: 1)
        XCTAssertEqual(errorLines(lacks).count, 1, lacks.stderr)
        XCTAssertTrue(lacks.stderr.contains("lacks 1 revision of the job's 4"), lacks.stderr)
        XCTAssertEqual(try String(contentsOfFile: job + "/config", encoding: .utf8).contains("store"), false)
        let c2 = backy(["-b", job, "copy", "--to", store, "-r", "last"])
        XCTAssertTrue(c2.out.contains("Copied 1 revision to"), c2.out)
        let sw = backy(["-b", job, "set-store", store])
        XCTAssertTrue(sw.out.hasPrefix("Switched job ") && sw.out.contains(" to \(store) (4 revisions of the job there)"), "set-store said: " + sw.out)
        XCTAssertTrue(try String(contentsOfFile: job + "/config", encoding: .utf8).contains("{store: rados:\(RadosStoreTests.pool)/\(ns)}"))
        // Now a RADOS job: a backup goes into the namespace, restores bit-exact.
        E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ 300), at: UInt64(4 * 4 * RadosStoreTests.mib))
        backy(["-b", job, "backup", "daily"])
        want.append(E2E.sha256(file: img))
        let all = revisionIDs(job)
        XCTAssertEqual(all.count, 5)
        XCTAssertEqual(revisionIDs(attached), all)
        for (i, id) in all.enumerated() { XCTAssertEqual(restoredSHA(job, id, dir: d), want[i], id) }
        XCTAssertEqual(objects(ns).filter { $0.hasPrefix("rev/") }.count, 5)
        let same = backy(["-b", job, "set-store", store])
        XCTAssertTrue(same.out.contains("already uses"), same.out)
    }

    /// A RADOS job is copied into a new directory (a directory job that
    /// restores bit-exact on its own), into another namespace (attached
    /// there: bit-exact), and into its own directory, after which set-store
    /// makes it a directory job again that backs up and restores.
    func testCopyRadosJobToDirectoryAndOtherNamespace() throws {
        let (d, s, img, ns) = fixture("copy-rados-out", chunks: 5)
        let job = d + "/job"
        initRados(job, ns: ns, img: img)
        var want: [String] = []
        for i in 0..<2 {
            if i > 0 { E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ 77), at: 0) }
            backy(["-b", job, "backup", "daily"])
            want.append(E2E.sha256(file: img))
        }
        let ids = revisionIDs(job)
        XCTAssertEqual(ids.count, 2)

        let dir = d + "/offsite"
        let c = backy(["-b", job, "copy", "--to", dir])
        XCTAssertTrue(c.out.contains("Copied 2 revisions to \(dir)"), c.out)
        XCTAssertEqual(identity(dir), identity(job))
        for (i, id) in ids.enumerated() {
            XCTAssertEqual(restoredSHA(dir, id, dir: d), want[i], id)
            XCTAssertEqual(E2E.mapChunks(dir, id).count, 5)
        }
        let v = E2E.backy(["-b", dir, "verify", "-r", ids[1]])
        XCTAssertEqual(v.code, 0, v.stderr)

        let ns2 = namespace()
        let other = "rados:\(RadosStoreTests.pool)/\(ns2)"
        backy(["-b", job, "copy", "--to", other])
        let att = d + "/att2"
        backy(["-b", att, "init", "--store", other, "file", img])
        XCTAssertEqual(identity(att), identity(job))
        for (i, id) in ids.enumerated() { XCTAssertEqual(restoredSHA(att, id, dir: d), want[i], id) }
        // The source namespace is untouched.
        XCTAssertEqual(objects(ns).filter { $0.hasPrefix("rev/") }.count, 2)

        // Refusals, one line each: the job's own store; a target with another source.
        let own = backy(["-b", job, "copy", "--to", "rados:\(RadosStoreTests.pool)/\(ns)"], expect: 1)
        XCTAssertEqual(errorLines(own).count, 1, own.stderr)
        XCTAssertTrue(own.stderr.contains("is the job's own store"), own.stderr)
        let otherImg = d + "/other.img"
        makeImage(otherImg, chunks: 1, seed: s &+ 5)
        let foreign = d + "/foreign"
        backy(["-b", foreign, "init", "file", otherImg])
        let refused = backy(["-b", job, "copy", "--to", foreign], expect: 1)
        XCTAssertEqual(errorLines(refused).count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("holds a job with another source"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: foreign + "/chunks/") && !E2E.files(in: foreign + "/chunks", suffix: ".chunk").isEmpty)

        // Home again: copy into the job's own directory, set-store it.
        let home = backy(["-b", job, "copy", "--to", job])
        XCTAssertTrue(home.out.contains("Copied 2 revisions"), home.out)
        let sw = backy(["-b", job, "set-store", job])
        XCTAssertTrue(sw.out.contains("to \(job) (2 revisions of the job there)"), sw.out)
        let cfg = try String(contentsOfFile: job + "/config", encoding: .utf8)
        XCTAssertFalse(cfg.contains("store"), cfg)
        XCTAssertTrue(cfg.contains(img), cfg)
        E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ 78), at: UInt64(4 * RadosStoreTests.mib))
        backy(["-b", job, "backup", "daily"])
        want.append(E2E.sha256(file: img))
        let all = revisionIDs(job)
        XCTAssertEqual(all.count, 3)
        for (i, id) in all.enumerated() { XCTAssertEqual(restoredSHA(job, id, dir: d), want[i], id) }
        // The namespace still has its two revisions; the new one is local.
        XCTAssertEqual(objects(ns).filter { $0.hasPrefix("rev/") }.count, 2)
        XCTAssertFalse(E2E.files(in: job + "/chunks", suffix: ".chunk").isEmpty)
    }

    /// A copy (RADOS → another namespace) killed with SIGKILL at random
    /// moments (seeded) is finished by
    /// the next run: the target only ever shows complete revisions, each
    /// restoring bit-exact, and a run after the finished one copies nothing.
    func testCopyKilledMidwayIsFinishedByTheNextRun() throws {
        let d = E2E.tempDir(self, "copy-kill")
        let s = seed()
        var rng = XorShift(seed: s)
        let img = d + "/disk.img"
        makeImage(img, chunks: 16, seed: s)
        let job = d + "/job"
        backy(["-b", job, "init", "--store", "rados:\(RadosStoreTests.pool)/\(namespace())", "file", img])
        try setLockDuration(job, 3)
        var want: [String] = []
        for i in 0..<3 {
            if i > 0 { makeImage(img, chunks: 16, seed: s &+ UInt64(1000 * i)) }
            backy(["-b", job, "backup", "daily"])
            want.append(E2E.sha256(file: img))
        }
        let ids = revisionIDs(job)
        let ns = namespace()
        let store = "rados:\(RadosStoreTests.pool)/\(ns)"
        let attached = d + "/attached"
        var kills = 0
        let logPath = job + "/backy.log"
        func copiedLines() -> Int {
            ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").components(separatedBy: "Copied revision ").count - 1
        }
        for round in 0..<4 {
            let copiedBefore = copiedLines()
            let p = try startBacky(["-b", job, "copy", "--to", store])
            if round == 0 {
                // The first run dies right after it logged its first
                // revision, in the middle of the copy, however fast the
                // machine; the later ones at seeded random moments.
                let deadline = Date().addingTimeInterval(60)
                while p.isRunning && copiedLines() == copiedBefore && Date() < deadline { usleep(2_000) }
            } else {
                usleep(UInt32(100_000 + rng.next() % 1_400_000))
            }
            if p.isRunning { kill(p.processIdentifier, SIGKILL); kills += 1 }
            p.waitUntilExit()
            // Whatever the target shows is complete and whole.
            if objects(ns).contains("config") {
                if !FileManager.default.fileExists(atPath: attached) { backy(["-b", attached, "init", "--store", store, "file", img]) }
                for r in revisions(attached) {
                    XCTAssertEqual(r["complete"] as? Bool, true)
                    let id = r["uuid"] as! String
                    XCTAssertEqual(restoredSHA(attached, id, dir: d), want[ids.firstIndex(of: id)!], id)
                }
            }
        }
        print("\(name): copy killed \(kills) times")
        XCTAssertGreaterThan(kills, 0, "no copy was killed (all finished too soon)")
        // The killed copies' locks lapse after 3 s.
        var finished: RunResult?
        for _ in 0..<80 {
            let r = E2E.backy(["-b", job, "copy", "--to", store], env: cluster.env)
            if r.code == 0 { finished = r; break }
            XCTAssertTrue(r.stderr.contains("is running"), r.stderr)
            usleep(250_000)
        }
        XCTAssertNotNil(finished, "the copy never finished")
        if !FileManager.default.fileExists(atPath: attached) { backy(["-b", attached, "init", "--store", store, "file", img]) }
        XCTAssertEqual(identity(attached), identity(job))
        for (i, id) in ids.enumerated() { XCTAssertEqual(restoredSHA(attached, id, dir: d), want[i], id) }
        let again = backy(["-b", job, "copy", "--to", store])
        XCTAssertTrue(again.out.contains("Copied 0 revisions") && again.out.contains("0 chunks written"), again.out)
        // A purge of the target keeps every revision whole.
        backy(["-b", attached, "purge"])
        for (i, id) in ids.enumerated() { XCTAssertEqual(restoredSHA(attached, id, dir: d), want[i], id) }
    }

    /// backy 2.4 revisions are refused with one line naming `backy upgrade`;
    /// nothing is written to the target.
    func testCopyRefusesLegacyRevisions() throws {
        let d = E2E.tempDir(self, "copy-legacy")
        let job = d + "/job"
        let fixture = TestCephCluster.repo + "/Fixtures/legacy/job-chunked"
        XCTAssertEqual(E2E.run("/bin/cp", ["-a", fixture, job]).code, 0)
        let ns = namespace()
        let r = backy(["-b", job, "copy", "--to", "rados:\(RadosStoreTests.pool)/\(ns)"], expect: 1)
        XCTAssertEqual(errorLines(r).count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("was written by backy 2.x (chunked)") && r.stderr.contains("backy upgrade"), r.stderr)
        XCTAssertEqual(objects(ns), [])
    }
}

extension RadosStoreTests {
    /// `files`, `get`, `mount` and `drill` (FUSE mounts of a revision) work
    /// on a RADOS job: listings, a tree copied out equal to the one the
    /// image was made from, a clean drill, and no mount, pin or session
    /// left behind.
    func testFilesGetMountAndDrillOnRadosJob() throws {
        try MountFixture.require(DrillTests.tools)
        let tmp = PrivateTMPDIR("rados-files")
        defer { tmp.restore() }
        let d = E2E.tempDir(self, "rados-files")
        let disk = MountFixture.bare(d, seed: MountFixture.seed &+ 40)
        let ns = namespace()
        let job = d + "/job"
        backy(["-b", job, "init", "--store", "rados:\(RadosStoreTests.pool)/\(ns)", "file", disk.image])
        backy(["-b", job, "backup", "daily"])
        let t = disk.trees["disk"]!
        let ls = backy(["-b", job, "files", "disk:/"])
        let top = try FileManager.default.contentsOfDirectory(atPath: t)
        XCTAssertEqual(ls.out.split(separator: "\n").count, top.count + 1, ls.out)  // and lost+found/
        for name in top { XCTAssertTrue(ls.out.contains("  \(name)"), "\(name) in \(ls.out)") }
        let out = d + "/out"
        backy(["-b", job, "get", "disk:/", out])
        XCTAssertEqual(MountFixture.listing(out), MountFixture.listing(t))
        for f in MountFixture.regularFiles(t) {
            XCTAssertEqual(E2E.run("/usr/bin/cmp", [out + "/" + f, t + "/" + f]).code, 0, f)
        }
        let mp = d + "/mnt"
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        addTeardownBlock {
            if !MountFixture.mounts(mp).isEmpty { _ = E2E.run("/bin/sh", ["-c", "fusermount3 -uz \(mp) || umount -l \(mp)"]) }
        }
        backy(["-b", job, "mount", mp])
        XCTAssertEqual(E2E.run("/usr/bin/cmp", [mp + "/disk.raw", disk.image]).code, 0)
        backy(["-b", job, "umount", mp])
        let drill = backy(["-b", job, "drill"])
        XCTAssertEqual(drill.out.split(separator: "\n").last, "Result: clean", drill.out)
        XCTAssertTrue(tmp.noMounts)
        XCTAssertEqual(MountFixture.mounts(mp), [])
        XCTAssertEqual(objects(ns).filter { $0.hasPrefix("session/") }, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: job + "/chunks"))
    }
}
