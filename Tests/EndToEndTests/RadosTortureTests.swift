// RadosTortureTests: kill -9 at random moments (seeded: BACKY_TEST_SEED
// replays a run) during backup, purge, verify and copy of a RADOS job, on the
// real test cluster. After each kill: every finished revision of the job and
// of the copy's target restores bit-exact (sha256 against the image it was
// taken from; the newest and one drawn at random after each kill, all of
// them at the end), and nothing half-written is ever read (no incomplete
// revision is listed as complete, verify finds no bad chunk). The number of
// kills is BACKY_RADOS_KILLS (default 5 here; `make torture` runs 60); runs
// that finish before their kill come on top.
import Foundation
import TestSupport
import XCTest

extension RadosStoreTests {
    func testKillNineDuringBackupPurgeVerifyAndCopy() throws {
        let kills = Int(ProcessInfo.processInfo.environment["BACKY_RADOS_KILLS"] ?? "") ?? 5
        let d = E2E.tempDir(self, "rados-torture")
        let s = seed()
        var rng = XorShift(seed: s)
        let img = d + "/disk.img"
        let chunks = 20
        makeImage(img, chunks: chunks, seed: s)
        let job = d + "/job", copy = d + "/copy"
        let duration: UInt32 = 2
        let ns = namespace(), ns2 = namespace()
        initRados(job, ns: ns, img: img)
        try setLockDuration(job, Int(duration))
        backy(["-b", job, "backup", "daily"])
        // Finished revisions (of the job; the copy holds a subset) and the
        // sha256 of the image each was taken from.
        var want: [String: String] = [revisionIDs(job)[0]: E2E.sha256(file: img)]
        backy(["-b", job, "copy", "--to", "rados:\(RadosStoreTests.pool)/\(ns2)"])
        backy(["-b", copy, "init", "--store", "rados:\(RadosStoreTests.pool)/\(ns2)", "file", img])
        try setLockDuration(copy, Int(duration))

        func complete(_ j: String) -> [String] {
            revisions(j).filter { ($0["complete"] as? Bool) == true }.compactMap { $0["uuid"] as? String }
        }
        func check(_ j: String, _ ids: [String], _ what: String) {
            for id in ids {
                guard let sha = want[id] else { XCTFail("\(what): \(j) lists \(id), which never finished"); continue }
                XCTAssertEqual(restoredSHA(j, id, dir: d), sha, "\(what): \(id)")
            }
        }
        var counts: [String: (killed: Int, finished: Int)] = [:]
        let ops = ["backup", "purge", "verify", "copy"]
        var round = ops
        // Until `kills` runs were killed (a run that finished first counts
        // as a finished run, not a kill).
        var k = 0, killedRuns = 0
        // The shortest a run of each op took when it finished first: later
        // kills of that op come before it (a quiet machine is quick).
        var quickest: [String: UInt64] = [:]
        while killedRuns < kills && k < kills * 8 {
            defer { k += 1 }
            // Each op once per round of four, in a random order.
            if k % ops.count == 0 { round = ops.shuffled(using: &rng) }
            let op = round[k % ops.count]
            var args = ["-b", job]
            var sha = ""
            switch op {
            case "backup":
                // Change two chunks (new chunks to write), keep at most 4 revisions.
                for _ in 0..<2 {
                    let c = Int(rng.next() % UInt64(chunks))
                    E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: rng.next()), at: UInt64(c * 4 * RadosStoreTests.mib))
                }
                sha = E2E.sha256(file: img)
                let ids = complete(job)
                if ids.count > 4 { backy(["-b", job, "forget", "-r", ids[0]]) }
                args += ["backup", "daily"]
            case "purge": args += ["purge"]
            case "verify":
                if let id = complete(job).last { backy(["-b", job, "distrust", "-r", id]) }
                args += ["verify"]
            default: args += ["copy", "--to", "rados:\(RadosStoreTests.pool)/\(ns2)"]
            }
            let before = Set(complete(job))
            let started = DispatchTime.now().uptimeNanoseconds
            let p = try startBacky(args)
            // Up to about how long each takes here (some finish first).
            let most = min(["backup": 2_500_000, "purge": 300_000, "verify": 800_000, "copy": 1_200_000][op]!,
                           quickest[op].map { max(20_000, $0 * 9 / 10) } ?? .max)
            usleep(UInt32(rng.next() % most))
            let killed = p.isRunning
            if killed { kill(p.processIdentifier, SIGKILL); killedRuns += 1 }
            p.waitUntilExit()
            if !killed {
                let took = (DispatchTime.now().uptimeNanoseconds - started) / 1000
                quickest[op] = min(quickest[op] ?? took, took)
            }
            var c = counts[op] ?? (0, 0)
            if killed { c.killed += 1 } else { c.finished += 1 }
            counts[op] = c
            // A backup killed after its revision was complete: that
            // revision is finished (and must restore as the image was).
            for id in Set(complete(job)).subtracting(before) {
                XCTAssertEqual(op, "backup", "a revision appeared during \(op)")
                want[id] = sha
            }
            // Let the killed process's locks lapse, then check.
            usleep(duration * 1_000_000 + 300_000)
            let what = "run \(k + 1) (\(op)\(killed ? ", killed" : ", finished"))"
            for j in [job, copy] {
                let ids = complete(j)
                guard !ids.isEmpty else { continue }
                check(j, Array(Set([ids.last!, ids[Int(rng.next() % UInt64(ids.count))]])), what)
            }
        }
        // At the end: both jobs whole, every revision bit-exact, verify clean.
        for j in [job, copy] {
            backy(["-b", j, "distrust"])
            let v = backy(["-b", j, "verify"])
            XCTAssertFalse(v.stderr.contains("bad chunk"), v.stderr)
            backy(["-b", j, "purge"])
            check(j, complete(j), "end")
        }
        let summary = ops.map { "\($0) \(counts[$0]?.killed ?? 0) killed/\(counts[$0]?.finished ?? 0) finished" }.joined(separator: ", ")
        print("\(name): kill -9: \(killedRuns) kills in \(k) runs (\(summary)); \(want.count) revisions finished, \(complete(job).count) kept, \(complete(copy).count) in the copy")
        XCTAssertEqual(killedRuns, kills, "too few runs were killed (they finish too soon)")
    }
}

extension RadosStoreTests {
    /// The test cluster's OSD stopped (SIGSTOP) in the middle of a backup:
    /// the backup fails with one error line and a non-zero exit within a
    /// bounded time (the operation timeout, not "until the OSD resumes");
    /// after SIGCONT the next backup succeeds, and every revision restores
    /// bit-exact.
    func testOSDStoppedMidBackupFailsInBoundedTime() throws {
        let (d, s, img, ns) = fixture("rados-osd-stop", chunks: 40)
        let job = d + "/job"
        initRados(job, ns: ns, img: img)
        // Operations time out after max(5 s, a third of the duration).
        try setLockDuration(job, 15)
        backy(["-b", job, "backup", "daily"])
        var want = [revisionIDs(job)[0]: E2E.sha256(file: img)]
        makeImage(img, chunks: 40, seed: s &+ 500)
        let pidText = try String(contentsOfFile: cluster.dir + "/osd.0.pid", encoding: .utf8)
        let osd = try XCTUnwrap(pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        let (p, errPipe) = try startBackup(job)
        // Stop the OSD once the backup has written a few chunks.
        let before = chunkObjects(ns).count
        XCTAssertTrue(E2E.wait(timeout: 60) { chunkObjects(ns).count >= before + 3 || !p.isRunning })
        XCTAssertTrue(p.isRunning, "the backup finished before the OSD could be stopped")
        XCTAssertEqual(kill(osd, SIGSTOP), 0)
        let stopped = Date()
        var resumed = false
        defer { if !resumed { kill(osd, SIGCONT) } }
        let bounded = E2E.wait(timeout: 90) { !p.isRunning }
        let took = Date().timeIntervalSince(stopped)
        kill(osd, SIGCONT)
        resumed = true
        if !bounded { p.terminate() }
        p.waitUntilExit()
        let err = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        print("\(name): with the OSD stopped the backup exited \(p.terminationStatus) after \(String(format: "%.1f", took)) s: \(err)")
        XCTAssertTrue(bounded, "the backup still ran 90 s after the OSD was stopped")
        XCTAssertEqual(p.terminationStatus, 1, err)
        let lines = err.split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.hasPrefix("Error: ") }.count, 1, err)
        XCTAssertTrue(err.contains("timed out"), err)
        XCTAssertFalse(err.contains("DNS SRV"), err)
        // The next run succeeds (once the failed run's locks are released or lapsed).
        var ok = false
        for _ in 0..<120 {
            let r = E2E.backy(["-b", job, "backup", "daily"], env: cluster.env)
            if r.code == 0 { ok = true; break }
            usleep(500_000)
        }
        XCTAssertTrue(ok, "no backup succeeded after the OSD resumed")
        let ids = revisionIDs(job)
        XCTAssertEqual(ids.count, 2)
        if let last = ids.last { want[last] = E2E.sha256(file: img) }
        for id in ids { XCTAssertEqual(restoredSHA(job, id, dir: d), want[id], id) }
    }

    /// A cluster that cannot be found (no monitor addresses) is one error
    /// line, nothing of librados' own on stderr.
    func testUnreachableClusterIsOneErrorLine() throws {
        let d = E2E.tempDir(self, "rados-nocluster")
        let img = d + "/disk.img"
        makeImage(img, chunks: 1, seed: 1)
        let empty = d + "/empty.conf"
        try "[global]\n".write(toFile: empty, atomically: true, encoding: .utf8)
        let r = E2E.backy(["-b", d + "/job", "init", "--store", "rados:\(RadosStoreTests.pool)/x", "file", img],
                          env: ["CEPH_CONF": empty, "CEPH_ARGS": ""])
        XCTAssertEqual(r.code, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("Error: ") && r.stderr.contains("no monitor addresses"), r.stderr)
        // An unreachable monitor: one line too.
        let far = E2E.backy(["-b", d + "/job", "init", "--store", "rados:\(RadosStoreTests.pool)/x", "file", img],
                            env: ["CEPH_CONF": empty, "CEPH_ARGS": "-m 127.0.0.1:1 --client_mount_timeout=3"])
        XCTAssertEqual(far.code, 1, far.stderr)
        XCTAssertEqual(far.stderr.split(separator: "\n").count, 1, far.stderr)
        XCTAssertTrue(far.stderr.hasPrefix("Error: "), far.stderr)
    }
}
