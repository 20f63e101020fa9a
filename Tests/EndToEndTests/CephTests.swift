// CephTests: the ceph-rbd source against a real throwaway Ceph cluster (one
// monitor, one memstore OSD on 127.0.0.1, started by scripts/ceph-test-cluster
// once for the class). Images are written at chosen offsets through
// python3-rbd, and every revision is compared bit for bit with
// `rbd export` of a snapshot taken right after its backup.
import Foundation
import XCTest

final class CephTests: XCTestCase {
    // nonisolated(unsafe): set by the class's setUp() before its first test runs, only read by the tests after it (XCTest runs them one at a time).
    nonisolated(unsafe) static var cluster: TestCephCluster?
    nonisolated(unsafe) static var startError = ""
    nonisolated(unsafe) static var helper = ""

    static let mib: UInt64 = 1 << 20
    static var clusterDir: String? { cluster?.started == true ? cluster?.dir : nil }
    static var conf: String { (clusterDir ?? "/nonexistent") + "/ceph.conf" }
    /// The environment of every backy and rbd call: this cluster, nothing else.
    static var env: [String: String] { ["CEPH_CONF": conf, "CEPH_ARGS": ""] }

    override class func setUp() {
        super.setUp()
        let c = TestCephCluster(prefix: "backy-ceph")
        if !c.start() { startError = c.startError }
        cluster = c
        helper = NSTemporaryDirectory() + "/backy-ceph-helper-\(UUID().uuidString.prefix(8)).py"
        try? helperSource.write(toFile: helper, atomically: true, encoding: .utf8)
    }

    override class func tearDown() {
        cluster?.stop()
        cluster = nil
        try? FileManager.default.removeItem(atPath: helper)
        super.tearDown()
    }

    override func setUpWithError() throws {
        guard CephTests.clusterDir != nil else {
            throw E2E.unavailable("no Ceph test cluster: \(CephTests.startError)")
        }
    }

    // MARK: helpers

    /// Operations on an image through python3-rbd (see `helperSource`).
    @discardableResult
    func rbdOps(_ image: String, _ ops: String..., file: StaticString = #filePath, line: UInt = #line) -> String {
        let r = E2E.run("/usr/bin/python3", [CephTests.helper, image] + ops, env: CephTests.env, timeout: 120)
        XCTAssertEqual(r.code, 0, "helper \(ops): \(r.stderr)", file: file, line: line)
        return r.out
    }

    @discardableResult
    func rbd(_ args: String..., file: StaticString = #filePath, line: UInt = #line) -> RunResult {
        let r = E2E.run("/usr/bin/rbd", args, env: CephTests.env, timeout: 120)
        XCTAssertEqual(r.code, 0, "rbd \(args): \(r.stderr)", file: file, line: line)
        return r
    }

    func snapshots(_ image: String) -> Set<String> {
        Set(rbdOps(image, "snaps").split(separator: "\n").map(String.init))
    }

    /// A fresh image of `size` bytes, removed (with its snapshots) at the end.
    func makeImage(_ size: UInt64) -> String {
        let name = "img-\(UUID().uuidString.prefix(8).lowercased())"
        rbdOps(name, "create:\(size)")
        addTeardownBlock { [name] in
            _ = E2E.run("/usr/bin/python3", [CephTests.helper, name, "remove"], env: CephTests.env, timeout: 120)
        }
        return name
    }

    func initJob(_ dir: String, image: String, extra: String? = nil) -> String {
        let job = dir + "/job"
        if let extra {
            try! FileManager.default.createDirectory(atPath: job, withIntermediateDirectories: true)
            try! "{image: \(image), pool: rbd, type: ceph-rbd, \(extra)}\n".write(toFile: job + "/config", atomically: true, encoding: .utf8)
        } else {
            let r = E2E.backy(["-b", job, "init", "ceph-rbd", "rbd/" + image], env: CephTests.env)
            XCTAssertEqual(r.code, 0, r.stderr)
        }
        return job
    }

    struct Backup {
        let id: String
        let checkSnapshot: String
        let log: String
        let stats: [String: Any]
        let trust: String
    }

    func revisions(_ job: String, file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        E2E.revisions(job, env: CephTests.env, file: file, line: line)
    }

    /// Runs `backy backup`, expects success, and takes a user snapshot
    /// `check-<revision>` of the image as it was backed up (nothing writes in
    /// between), to compare the revision with later.
    @discardableResult
    func backup(_ job: String, _ image: String, env: [String: String] = [:], expect: [String] = [],
                file: StaticString = #filePath, line: UInt = #line) -> Backup {
        var e = CephTests.env
        for (k, v) in env { e[k] = v }
        let before = Set(revisions(job, file: file, line: line).compactMap { $0["uuid"] as? String })
        let r = E2E.backy(["-b", job, "backup", "daily"], env: e)
        XCTAssertEqual(r.code, 0, r.stderr, file: file, line: line)
        for s in expect {
            XCTAssertTrue(r.stderr.contains(s), "log lacks '\(s)':\n\(r.stderr)", file: file, line: line)
        }
        let revs = revisions(job, file: file, line: line)
        XCTAssertEqual(revs.filter { !before.contains($0["uuid"] as? String ?? "") }.count, 1, "one new revision", file: file, line: line)
        guard let last = revs.last, let id = last["uuid"] as? String, !before.contains(id) else {
            XCTFail("no new revision after backup: \(r.stderr)", file: file, line: line)
            return Backup(id: "", checkSnapshot: "", log: r.stderr, stats: [:], trust: "")
        }
        let snap = "check-\(id)"
        rbdOps(image, "snap:" + snap)
        return Backup(id: id, checkSnapshot: snap, log: r.stderr,
                      stats: last["stats"] as? [String: Any] ?? [:], trust: last["trust"] as? String ?? "")
    }

    /// Every backup restores bit-exact against `rbd export pool/img@snap -`.
    func assertRestoresBitExact(_ job: String, _ image: String, _ backups: [Backup], dir: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        for b in backups {
            let out = dir + "/restore-\(b.id)"
            let ref = dir + "/export-\(b.id)"
            let r = E2E.backy(["-b", job, "restore", "-r", b.id, out], env: CephTests.env)
            XCTAssertEqual(r.code, 0, r.stderr, file: file, line: line)
            rbd("export", "--no-progress", "rbd/\(image)@\(b.checkSnapshot)", ref, file: file, line: line)
            XCTAssertEqual(E2E.run("/usr/bin/cmp", [out, ref]).code, 0,
                           "revision \(b.id) differs from rbd export of @\(b.checkSnapshot)", file: file, line: line)
            try? FileManager.default.removeItem(atPath: out)
            try? FileManager.default.removeItem(atPath: ref)
        }
    }

    func stat(_ b: Backup, _ key: String) -> Int? { b.stats[key] as? Int }

    func backySnapshots(_ image: String) -> Set<String> {
        snapshots(image).filter { $0.hasPrefix("backy-") }
    }

    // MARK: tests

    func testFullThenDifferentialAfterWritesAtChosenOffsets() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let size = 42 * mib + 1536  // 11 chunks, the last one 2 MiB + 1536 bytes
        let img = makeImage(size)
        rbdOps(img, "write:0:65536:1", "write:\(12 * mib):\(3 * mib):2", "write:\(40 * mib):\(2 * mib + 1536):3")
        let job = initJob(d, image: img)

        let b1 = backup(job, img, expect: ["Performing full backup", "Full backup: no previous revision"])
        XCTAssertEqual(b1.stats["backup_type"] as? String, "full")
        XCTAssertEqual(stat(b1, "chunks"), 11)
        XCTAssertEqual(stat(b1, "chunks_read"), 3, "a full backup reads only the allocated objects")
        XCTAssertEqual(stat(b1, "chunks_zero"), 8)
        XCTAssertEqual(b1.stats["ceph-verification"] as? String, "partial")
        XCTAssertEqual(stat(b1, "verified_chunks"), 1)
        XCTAssertEqual(backySnapshots(img), ["backy-" + b1.id])

        // Across the chunk 0/1 boundary, inside chunk 5, inside the last chunk.
        rbdOps(img, "write:\(4 * mib - 1000):3000:4", "write:\(20 * mib + 5):100:5", "write:\(size - 700):700:6")
        let b2 = backup(job, img, expect: ["Performing differential backup"])
        XCTAssertEqual(b2.stats["backup_type"] as? String, "differential")
        XCTAssertEqual(stat(b2, "chunks_read"), 4, "only the changed objects are read (chunks 0, 1, 5, 10)")
        XCTAssertEqual(stat(b2, "chunks_adopted"), 7)
        XCTAssertEqual(stat(b2, "diff_guard_chunks"), 7, "unchanged chunks are compared with the parent")
        XCTAssertEqual(backySnapshots(img), ["backy-" + b2.id], "only the newest revision's snapshot remains")

        let b3 = backup(job, img, expect: ["Performing differential backup"])
        XCTAssertEqual(stat(b3, "chunks_read"), 0, "an unchanged image reads nothing")
        XCTAssertEqual(stat(b3, "chunks_written"), 0)
        XCTAssertEqual(b3.trust, "trusted")
        assertRestoresBitExact(job, img, [b1, b2, b3], dir: d)
        // The snapshots backy leaves behind match too.
        let ref = d + "/backy-snap"
        rbd("export", "--no-progress", "rbd/\(img)@backy-\(b3.id)", ref)
        XCTAssertEqual(E2E.backy(["-b", job, "restore", "-r", b3.id, d + "/r3"], env: CephTests.env).code, 0)
        XCTAssertEqual(E2E.sha256(file: ref), E2E.sha256(file: d + "/r3"))
    }

    func testManyReadersOutOfOrderWithSmallReadAhead() throws {
        // Workers finish chunks out of order; the read-ahead window must
        // still hand each one its own bytes (and never stall).
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(64 * mib + 4096)
        rbdOps(img, "write:0:\(64 * mib + 4096):30")
        let job = initJob(d, image: img)
        var all: [Backup] = []
        for (threads, window) in [("7", "2"), ("3", "1"), ("1", "5")] {
            rbdOps(img, "write:\(UInt64(all.count) * 9 * mib):\(mib):\(31 + all.count)")
            all.append(backup(job, img, env: ["BACKY_THREADS": threads, "BACKY_RBD_READAHEAD": window]))
        }
        XCTAssertEqual(stat(all[0], "chunks_read"), 17)
        assertRestoresBitExact(job, img, all, dir: d)
    }

    func testDiscardsBecomeZeroChunks() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(32 * mib)
        rbdOps(img, "write:0:\(16 * mib):7")
        let job = initJob(d, image: img)
        let b1 = backup(job, img, expect: ["Performing full backup"])
        XCTAssertEqual(stat(b1, "chunks_zero"), 4)

        // A whole object (chunk 1), 128 KiB inside chunk 2, and one discard
        // smaller than 64 KiB that librbd ignores (chunk 3 keeps its data).
        rbdOps(img, "discard:\(4 * mib):\(4 * mib)", "discard:\(9 * mib):\(128 * 1024)", "discard:\(12 * mib + 512):4096")
        let b2 = backup(job, img, expect: ["Performing differential backup"])
        XCTAssertEqual(stat(b2, "chunks_zero"), 5, "the discarded object became a zero chunk")
        XCTAssertLessThanOrEqual(stat(b2, "chunks_read") ?? 99, 2, "a removed object is not read")
        XCTAssertGreaterThanOrEqual(stat(b2, "chunks_read") ?? 0, 1, "the partly discarded chunk is read")

        // Discard everything that is left.
        rbdOps(img, "discard:0:\(32 * mib)")
        let b3 = backup(job, img, expect: ["Performing differential backup"])
        XCTAssertEqual(stat(b3, "chunks_zero"), 8)
        XCTAssertEqual(stat(b3, "chunks_read"), 0)
        assertRestoresBitExact(job, img, [b1, b2, b3], dir: d)
    }

    func testImageGrowsAndShrinks() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(20 * mib + 512)
        rbdOps(img, "write:0:\(20 * mib + 512):8")
        let job = initJob(d, image: img)
        var all = [backup(job, img, expect: ["Performing full backup"])]
        XCTAssertEqual(stat(all[0], "chunks"), 6)

        // Grow (the old partial last chunk changes size), data in the new part.
        rbdOps(img, "resize:\(30 * mib + 4096)", "write:\(28 * mib):4096:9")
        all.append(backup(job, img, expect: ["Performing differential backup"]))
        XCTAssertEqual(stat(all[1], "chunks"), 8)
        XCTAssertEqual(all[1].stats["bytes_written"] as? Int, Int(30 * mib + 4096))

        // Shrink into the middle of a chunk.
        rbdOps(img, "resize:\(9 * mib + 1024)")
        all.append(backup(job, img, expect: ["Performing differential backup"]))
        XCTAssertEqual(stat(all[2], "chunks"), 3)

        // Shrink and grow again between two backups: the cut-off part is zero.
        rbdOps(img, "resize:\(6 * mib)", "resize:\(13 * mib)")
        all.append(backup(job, img, expect: ["Performing differential backup"]))
        XCTAssertEqual(stat(all[3], "chunks"), 4)

        // Shrink to a whole number of chunks, then to less than one chunk.
        rbdOps(img, "resize:\(8 * mib)")
        all.append(backup(job, img))
        rbdOps(img, "resize:\(mib + 512)", "write:\(mib):512:10")
        all.append(backup(job, img))
        XCTAssertEqual(stat(all[5], "chunks"), 1)
        assertRestoresBitExact(job, img, all, dir: d)
    }

    func testMissingParentSnapshotMeansFullBackup() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(16 * mib)
        rbdOps(img, "write:0:\(8 * mib):11")
        let job = initJob(d, image: img)
        let b1 = backup(job, img)
        rbd("snap", "rm", "--no-progress", "rbd/\(img)@backy-\(b1.id)")
        rbdOps(img, "write:\(12 * mib):1000:12")
        let b2 = backup(job, img, expect: ["Full backup: could not find snapshot for previous revision", "Performing full backup"])
        XCTAssertEqual(b2.stats["backup_type"] as? String, "full")
        XCTAssertEqual(stat(b2, "chunks_read"), 3)
        let b3 = backup(job, img, expect: ["Performing differential backup"])
        assertRestoresBitExact(job, img, [b1, b2, b3], dir: d)
    }

    func testDistrustedParentMeansFullBackup() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(16 * mib)
        rbdOps(img, "write:\(mib):\(6 * mib):13")
        let job = initJob(d, image: img)
        let b1 = backup(job, img)
        // Distrust it (what `backy distrust` does): rewrite its trust field.
        let rev = job + "/\(b1.id).rev"
        let text = try String(contentsOfFile: rev, encoding: .utf8)
        XCTAssertTrue(text.contains("trust: trusted"))
        chmod(rev, 0o640)
        try text.replacingOccurrences(of: "trust: trusted", with: "trust: distrusted").write(toFile: rev, atomically: true, encoding: .utf8)
        rbdOps(img, "write:\(14 * mib):100:14")
        let b2 = backup(job, img, expect: ["Full backup: distrusted parent", "Performing full backup"])
        XCTAssertEqual(b2.stats["backup_type"] as? String, "full")
        XCTAssertEqual(stat(b2, "chunks_read"), 3)
        XCTAssertEqual(b2.trust, "trusted")
        let b3 = backup(job, img, expect: ["Performing differential backup"])
        assertRestoresBitExact(job, img, [b1, b2, b3], dir: d)
    }

    func testFullAlways() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(12 * mib)
        rbdOps(img, "write:0:\(5 * mib):15")
        let job = initJob(d, image: img, extra: "full-always: true")
        let b1 = backup(job, img, expect: ["Full backup: per configuration", "Performing full backup"])
        rbdOps(img, "write:\(9 * mib):10:16")
        let b2 = backup(job, img, expect: ["Full backup: per configuration", "Performing full backup"])
        XCTAssertFalse(b2.log.contains("Performing differential backup"))
        XCTAssertEqual(b2.stats["backup_type"] as? String, "full")
        XCTAssertEqual(stat(b2, "chunks_read"), 3)
        XCTAssertEqual(backySnapshots(img), [], "full-always keeps no snapshot for a next diff")
        assertRestoresBitExact(job, img, [b1, b2], dir: d)
    }

    func testSnapshotCleanupAfterSuccessAndAfterFailure() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(16 * mib)
        rbdOps(img, "write:0:\(4 * mib):17", "snap:mine", "snap:backy-not-ours-but-named-so")
        let job = initJob(d, image: img)
        var all = [backup(job, img)]
        XCTAssertEqual(snapshots(img), ["mine", all[0].checkSnapshot, "backy-" + all[0].id],
                       "other backy-* snapshots are removed, other snapshots stay")
        rbdOps(img, "write:\(5 * mib):100:18")
        all.append(backup(job, img))
        all.append(backup(job, img))
        let checks = Set(all.map(\.checkSnapshot))
        XCTAssertEqual(snapshots(img), checks.union(["mine", "backy-" + all[2].id]))

        // A run that fails after its snapshot was taken: the chunk store
        // cannot take files (its temp directory is a file).
        let tmp = job + "/chunks/.tmp"
        try FileManager.default.removeItem(atPath: tmp)
        _ = FileManager.default.createFile(atPath: tmp, contents: Data("not a directory".utf8))
        rbdOps(img, "write:\(9 * mib):\(mib):19")
        let failed = E2E.backy(["-b", job, "backup", "daily"], env: CephTests.env)
        XCTAssertEqual(failed.code, 1, failed.stderr)
        XCTAssertTrue(failed.stderr.contains("Performing differential backup"), failed.stderr)
        XCTAssertTrue(failed.stderr.contains("Removing old snapshot backy-"), "the failed run's snapshot is removed:\n\(failed.stderr)")
        XCTAssertEqual(snapshots(img), checks.union(["mine", "backy-" + all[2].id]),
                       "after a failure the previous good revision's snapshot remains")
        XCTAssertEqual(E2E.revisionIDs(job), all.map(\.id), "the failed revision is removed")

        // Repaired: the next run can still diff against the kept snapshot.
        try FileManager.default.removeItem(atPath: tmp)
        all.append(backup(job, img, expect: ["Performing differential backup"]))
        XCTAssertEqual(backySnapshots(img), ["backy-" + all[3].id])
        assertRestoresBitExact(job, img, all, dir: d)
    }

    func testMissingImageOrPool() throws {
        let d = E2E.tempDir(self, "ceph")
        for (spec, what) in [("rbd/no-such-image", "RBD image rbd/no-such-image does not exist"),
                             ("no-such-pool/img", "Ceph pool 'no-such-pool' does not exist")] {
            let job = d + "/job-" + spec.replacingOccurrences(of: "/", with: "-")
            XCTAssertEqual(E2E.backy(["-b", job, "init", "ceph-rbd", spec], env: CephTests.env).code, 0)
            let r = E2E.backy(["-b", job, "backup", "daily"], env: CephTests.env)
            XCTAssertEqual(r.code, 1)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "one clear line:\n\(r.stderr)")
            XCTAssertTrue(r.stderr.contains(what), r.stderr)
            XCTAssertEqual(E2E.files(in: job, suffix: ".rev"), [], "no revision")
        }
        // No snapshot was created on the pool's images by the failed runs.
        let img = makeImage(4 * CephTests.mib)
        XCTAssertEqual(snapshots(img), [])
    }

    func testRestorePipedIntoRbdImport() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(21 * mib + 512)
        rbdOps(img, "write:\(mib):\(3 * mib):20", "write:\(20 * mib):\(mib + 512):21")
        let job = initJob(d, image: img)
        let b1 = backup(job, img)
        rbdOps(img, "write:0:4096:22")
        let b2 = backup(job, img)
        let target = "restored-\(UUID().uuidString.prefix(8).lowercased())"
        addTeardownBlock { _ = E2E.run("/usr/bin/python3", [CephTests.helper, target, "remove"], env: CephTests.env) }
        let sh = "set -o pipefail; '\(E2E.binary)' -b '\(job)' restore -r \(b1.id) - | rbd import --no-progress - rbd/\(target)"
        let r = E2E.run("/bin/bash", ["-c", sh], env: CephTests.env)
        XCTAssertEqual(r.code, 0, r.stderr)
        rbd("export", "--no-progress", "rbd/\(target)", d + "/imported")
        rbd("export", "--no-progress", "rbd/\(img)@\(b1.checkSnapshot)", d + "/expected")
        XCTAssertEqual(E2E.sha256(file: d + "/imported"), E2E.sha256(file: d + "/expected"))
        XCTAssertEqual(E2E.allocated(d + "/expected") > 0, true)
        assertRestoresBitExact(job, img, [b1, b2], dir: d)
    }

    func testDiffThatMissesAChangeDistrustsTheRevision() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(16 * mib)
        rbdOps(img, "write:\(4 * mib):\(8 * mib):23")
        let job = initJob(d, image: img)
        let b1 = backup(job, img)
        // Change object 1 behind librbd's back (as a Ceph bug would): the
        // object map does not notice, so the diff reports it unchanged.
        rbdOps(img, "corrupt:1:24", "write:0:4096:25")
        let b2 = backup(job, img, expect: ["Performing differential backup", "missed changes",
                                           "Marking revision", "distrusted"])
        // Distrusted by its source: the post-backup chunk verification
        // (BackupRun) leaves it alone, since its chunks being intact says
        // nothing about the source.
        XCTAssertEqual(b2.trust, "distrusted")
        XCTAssertTrue(b2.log.contains("Found inconsistent revision(s)") == false, b2.log)
        XCTAssertNotNil(b2.stats["distrust_reason"] as? String)
        XCTAssertEqual(stat(b2, "diff_mismatches"), 1, "object 1 was changed behind librbd's back")
        XCTAssertEqual(stat(b2, "chunks_read"), 1)
        // The next run trusts no diff and reads everything again.
        let b3 = backup(job, img, expect: ["Full backup: distrusted parent", "Performing full backup"])
        XCTAssertEqual(b3.trust, "trusted")
        XCTAssertEqual(stat(b3, "chunks_read"), 3)
        XCTAssertNil(b3.stats["diff_mismatches"])
        XCTAssertEqual(revisions(job).map { $0["trust"] as? String ?? "" }, ["trusted", "distrusted", "trusted"],
                       "b2 stays distrusted; a verify of its chunks does not trust it again")
        XCTAssertEqual(E2E.backy(["-b", job, "verify"], env: CephTests.env).code, 0)
        XCTAssertEqual(revisions(job).map { $0["trust"] as? String ?? "" }, ["trusted", "distrusted", "trusted"])
        assertRestoresBitExact(job, img, [b3], dir: d)
        // b2 holds the parent's bytes where the diff lied: it is not bit-exact.
        let out = d + "/r2"
        XCTAssertEqual(E2E.backy(["-b", job, "restore", "-r", b2.id, out], env: CephTests.env).code, 0)
        rbd("export", "--no-progress", "rbd/\(img)@\(b2.checkSnapshot)", d + "/e2")
        XCTAssertNotEqual(E2E.sha256(file: out), E2E.sha256(file: d + "/e2"))
        _ = b1
    }

    func testVerificationSamplesOnePercentWithinItsBudget() throws {
        let d = E2E.tempDir(self, "ceph")
        let mib = CephTests.mib
        let img = makeImage(1024 * mib)  // sparse: 256 chunks, 3 with data
        rbdOps(img, "write:0:100:26", "write:\(500 * mib):\(5 * mib):27")
        let job = initJob(d, image: img)
        let b1 = backup(job, img, expect: ["Performing partial verification"])
        XCTAssertEqual(stat(b1, "chunks"), 256)
        XCTAssertEqual(stat(b1, "chunks_read"), 3)
        XCTAssertEqual(stat(b1, "verified_chunks"), 2, "1 % of 256 chunks")
        XCTAssertEqual(b1.stats["ceph-verification"] as? String, "partial")

        // A budget of zero stops the verification at once; it is recorded.
        let job2 = initJob(d + "/2", image: img, extra: "verify-budget: 0")
        let b2 = backup(job2, img, expect: ["Stopping verification after"])
        XCTAssertEqual(stat(b2, "verified_chunks"), 0)
        XCTAssertEqual(b2.stats["ceph-verification"] as? String, "partial")
        assertRestoresBitExact(job2, img, [b2], dir: d)
        assertRestoresBitExact(job, img, [b1], dir: d)
    }

    func testClusterAccessFromConfigKeysAndCephArgs() throws {
        let d = E2E.tempDir(self, "ceph")
        let img = makeImage(8 * CephTests.mib)
        rbdOps(img, "write:0:5000:28")
        let bogus = ["CEPH_CONF": "/nonexistent/ceph.conf"]
        // ceph-conf and client-id in the job config win over CEPH_CONF.
        let job = initJob(d + "/a", image: img, extra: "ceph-conf: \(CephTests.conf), client-id: admin")
        let b1 = backup(job, img, env: bogus)
        // CEPH_ARGS as the rbd tool reads it: -c FILE and --id NAME.
        let job2 = initJob(d + "/b", image: img)
        let b2 = backup(job2, img, env: ["CEPH_CONF": "/nonexistent/ceph.conf", "CEPH_ARGS": "-c \(CephTests.conf) --id admin"])
        // An unknown user cannot connect: one line, exit 1, no revision.
        let job3 = initJob(d + "/c", image: img, extra: "client-id: nobody")
        let r = E2E.backy(["-b", job3, "backup", "daily"], env: CephTests.env)
        XCTAssertEqual(r.code, 1)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("cannot connect to the Ceph cluster as client.nobody"), r.stderr)
        // Type flyingcircus is read as ceph-rbd, with a note.
        let job4 = d + "/fc"
        try FileManager.default.createDirectory(atPath: job4, withIntermediateDirectories: true)
        try "{consul_acl_token: x, image: \(img), pool: rbd, type: flyingcircus, vm: test}\n".write(toFile: job4 + "/config", atomically: true, encoding: .utf8)
        let b4 = backup(job4, img, expect: ["Consul", "not supported", "Performing full backup"])
        // Four jobs on one image: each clean-up removes the others' backy-*
        // snapshots (as backy 2.4 does), so compare against check snapshots.
        assertRestoresBitExact(job, img, [b1], dir: d)
        assertRestoresBitExact(job2, img, [b2], dir: d)
        assertRestoresBitExact(job4, img, [b4], dir: d)
    }

    func testContinuesABackyTwoFourChainDifferentially() throws {
        // A job backy 2.4.3 wrote (Fixtures/legacy/job-chunked), now of a
        // Ceph image whose snapshot backy-<its last revision> holds that
        // revision's data, as after years of 2.4 runs.
        let d = E2E.tempDir(self, "ceph")
        let job = d + "/job"
        XCTAssertEqual(E2E.run("/bin/cp", ["-a", TestCephCluster.repo + "/Fixtures/legacy/job-chunked", job]).code, 0)
        let last = "aK73vQoKWC5oQU2et94jTk"
        XCTAssertEqual(E2E.backy(["-b", job, "restore", "-r", last, d + "/legacy.img"], env: CephTests.env).code, 0)
        let img = "legacy-\(UUID().uuidString.prefix(8).lowercased())"
        rbd("import", "--no-progress", d + "/legacy.img", "rbd/" + img)
        addTeardownBlock { _ = E2E.run("/usr/bin/python3", [CephTests.helper, img, "remove"], env: CephTests.env) }
        rbdOps(img, "snap:backy-" + last)
        chmod(job + "/config", 0o640)
        try "{image: \(img), pool: rbd, type: ceph-rbd}\n".write(toFile: job + "/config", atomically: true, encoding: .utf8)
        rbdOps(img, "write:\(4 * CephTests.mib + 10):5000:40")
        let b = backup(job, img, expect: ["Upgrading revision \(last)", "Performing differential backup"])
        XCTAssertEqual(stat(b, "chunks_read"), 1)
        XCTAssertEqual(backySnapshots(img), ["backy-" + b.id])
        assertRestoresBitExact(job, img, [b], dir: d)
    }

    // MARK: python3-rbd helper

    static let helperSource = #"""
import json, random, subprocess, sys
import rados, rbd

name = sys.argv[1]
cluster = rados.Rados(conffile='')
cluster.connect()
io = cluster.open_ioctx('rbd')

def data(n, seed):
    return random.Random(int(seed)).randbytes(n)

for op in sys.argv[2:]:
    parts = op.split(':')
    cmd, args = parts[0], parts[1:]
    if cmd == 'create':
        rbd.RBD().create(io, name, int(args[0]))
        continue
    if cmd == 'remove':
        try:
            with rbd.Image(io, name) as img:
                for s in list(img.list_snaps()):
                    img.remove_snap(s['name'])
            rbd.RBD().remove(io, name)
        except rbd.ImageNotFound:
            pass
        continue
    with rbd.Image(io, name) as img:
        if cmd == 'write':
            off, n, seed = int(args[0]), int(args[1]), args[2]
            assert img.write(data(n, seed), off) == n
        elif cmd == 'discard':
            img.discard(int(args[0]), int(args[1]))
        elif cmd == 'resize':
            img.resize(int(args[0]), allow_shrink=True)
        elif cmd == 'snap':
            img.create_snap(args[0])
        elif cmd == 'snaps':
            for s in img.list_snaps():
                print(s['name'])
        elif cmd == 'corrupt':
            # write a data object directly, bypassing librbd and its object map
            prefix = img.stat()['block_name_prefix']
            io.write_full('%s.%016x' % (prefix, int(args[0])), data(img.stat()['obj_size'], args[1]))
        else:
            sys.exit('unknown op ' + op)
io.close()
cluster.shutdown()
"""#
}
