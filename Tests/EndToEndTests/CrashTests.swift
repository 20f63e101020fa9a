// CrashTests: SIGKILL `backup` at random moments (seed printed,
// BACKY_TEST_SEED replays it) and at each named step of its durable writes
// (BACKY_CRASH_AT, docs/store-format.md "Order of writes"); every revision
// that was complete before stays bit-exact, at most one incomplete revision
// is left, and the next backup removes it and its temp files and succeeds.
import Foundation
import TestSupport
import XCTest

final class CrashTests: XCTestCase {
    var kills: Int { Int(ProcessInfo.processInfo.environment["BACKY_CRASH_KILLS"] ?? "") ?? 25 }

    func testKill9DuringBackupNeverHurtsCompleteRevisions() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        E2E.write(img, E2E.randomBytes(40 * 1024 * 1024, seed: 11), at: 0)
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", img]).code, 0)
        var expected: [String: String] = [:]   // revision id -> image sha256
        let t0 = Date()
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let full = Date().timeIntervalSince(t0)
        for id in E2E.revisionIDs(job) { expected[id] = E2E.sha256(file: img) }
        XCTAssertEqual(expected.count, 1)

        var rng = E2E.rng(self)
        var killed = 0, finished = 0
        var typical = full
        var round = 0
        while killed < kills && round < 4 * kills {
            defer { round += 1 }
            // Change a few chunks so the backup has new data to write.
            for k in 0..<3 {
                let off = UInt64.random(in: 0..<(40 * 1024 * 1024 - 70_000), using: &rng)
                E2E.write(img, E2E.randomBytes(65_536, seed: UInt64(round * 10 + k + 1000)), at: off)
            }
            let hash = E2E.sha256(file: img)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: E2E.binary)
            p.arguments = ["-b", job, "-l", job + "/backy.log", "backup", "daily"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            let started = Date()
            try p.run()
            let killAt = started.addingTimeInterval(Double.random(in: 0...(typical * 1.1), using: &rng))
            while Date() < killAt && p.isRunning { usleep(5_000) }
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                killed += 1
            } else {
                finished += 1
                // Later backups write only what changed: kill within the
                // time the last one took, not within the first full backup's.
                typical = Date().timeIntervalSince(started)
            }
            p.waitUntilExit()
            // Revisions complete now that were not before belong to this image.
            let revs = E2E.revisions(job)
            let incomplete = revs.filter { ($0["complete"] as? Bool) != true }
            XCTAssertLessThanOrEqual(incomplete.count, 1, "at most one incomplete revision")
            for r in revs where (r["complete"] as? Bool) == true {
                let id = r["uuid"] as! String
                if expected[id] == nil { expected[id] = hash }
            }
            // Spot-check the oldest and the newest complete revision.
            let complete = revs.filter { ($0["complete"] as? Bool) == true }.map { $0["uuid"] as! String }
            XCTAssertFalse(complete.isEmpty, "round \(round): the first revision is still complete")
            for id in Set([complete.first, complete.last].compactMap { $0 }) {
                assertRestores(job, id, expected[id], "after round \(round)")
            }
        }
        // The job still works: the next backup cleans up and succeeds.
        let hash = E2E.sha256(file: img)
        let r = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let revs = E2E.revisions(job)
        XCTAssertTrue(revs.allSatisfy { ($0["complete"] as? Bool) == true }, "no incomplete revision left")
        if let last = revs.last?["uuid"] as? String, expected[last] == nil { expected[last] = hash }
        for rev in revs { assertRestores(job, rev["uuid"] as! String, expected[rev["uuid"] as! String], "at the end") }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job + "/chunks/.tmp").count, 0, "no chunk temp files after a clean backup")
        XCTAssertGreaterThanOrEqual(killed, kills)
        // One revision per backup that finished, the first and the last, and
        // those killed after their .rev was complete.
        XCTAssertGreaterThanOrEqual(revs.count, finished + 2)
        XCTAssertLessThanOrEqual(revs.count, finished + 2 + killed)
        print("crash test: \(killed) backups killed with SIGKILL, \(finished) finished before the kill, \(revs.count) revisions all bit-exact")
    }

    /// The revision `id` restores to the image whose sha256 is `hash`.
    func assertRestores(_ job: String, _ id: String, _ hash: String?, _ when: String,
                        file: StaticString = #filePath, line: UInt = #line) {
        let r = E2E.backy(["-b", job, "restore", "-r", id, "-"])
        XCTAssertEqual(r.code, 0, "\(id) \(when): \(r.stderr)", file: file, line: line)
        XCTAssertNotNil(hash, "revision \(id) \(when) is one this test made", file: file, line: line)
        XCTAssertEqual(E2E.sha256(r.stdout), hash, "revision \(id) \(when)", file: file, line: line)
    }

    /// Files in the job directory (not in subdirectories) whose name contains `part`.
    func topFiles(_ job: String, containing part: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: job)) ?? []).filter { $0.contains(part) }.sorted()
    }

    /// A backup killed at each named step of its writes: what is on disk is
    /// exactly what that step promises, the complete revisions stay
    /// bit-exact, and the next backup cleans up and succeeds.
    func testKillAtEachDurabilityStep() throws {
        let d = E2E.tempDir(self)
        let img = d + "/disk.img", job = d + "/job"
        let mib4 = 4 * 1024 * 1024
        E2E.write(img, E2E.randomBytes(10 * mib4, seed: 21), at: 0)
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", img]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        var expected: [String: String] = [try XCTUnwrap(E2E.revisionIDs(job).first): E2E.sha256(file: img)]

        // A spec that names no point is one error line, exit 2, nothing done.
        let bad = E2E.backy(["-b", job, "backup", "daily"], env: ["BACKY_CRASH_AT": "map-written:0"])
        XCTAssertEqual(bad.code, 2)
        XCTAssertEqual(bad.stderr, "Error: BACKY_CRASH_AT: crash point 'map-written:0': the count after ':' must be a whole number ≥ 1\n")
        XCTAssertTrue(E2E.backy(["-b", job, "backup", "daily"], env: ["BACKY_CRASH_AT": "nowhere"]).stderr
            .hasPrefix("Error: BACKY_CRASH_AT: unknown crash point 'nowhere' (known: chunk-renamed, "))
        XCTAssertEqual(E2E.revisionIDs(job).count, 1)

        let points = ["chunk-renamed", "chunk-renamed:3", "map-before-rename", "map-written", "rev-before-complete", "rev-complete"]
        for (round, point) in points.enumerated() {
            // Four new chunks, so there are renames to count.
            for k in 0..<4 {
                E2E.write(img, E2E.randomBytes(100_000, seed: UInt64(300 + round * 10 + k)), at: UInt64((2 * k + round % 2) * mib4 + 5000))
            }
            let hash = E2E.sha256(file: img)
            let before = E2E.revisionIDs(job)
            let lastBefore = try FileManager.default.destinationOfSymbolicLink(atPath: job + "/last.rev")
            let chunksBefore = Set(E2E.files(in: job + "/chunks", suffix: ".chunk"))
            let r = E2E.backy(["-b", job, "backup", "daily"], env: ["BACKY_CRASH_AT": point])
            XCTAssertEqual(r.signal, SIGKILL, "\(point): the backup killed itself (exit \(r.code)): \(r.stderr)")

            let revs = E2E.revisions(job)
            let new = revs.filter { !before.contains($0["uuid"] as! String) }
            XCTAssertEqual(new.count, 1, "\(point): the killed backup's revision")
            guard let id = new.first?["uuid"] as? String else { continue }
            let complete = (new.first?["complete"] as? Bool) == true
            let newChunks = E2E.files(in: job + "/chunks", suffix: ".chunk").filter { !chunksBefore.contains($0) && !$0.contains("/.tmp/") }
            let mapTemps = topFiles(job, containing: id + ".map.tmp-")
            let revTemps = topFiles(job, containing: id + ".rev.tmp-")
            let hasMap = FileManager.default.fileExists(atPath: job + "/" + id + ".map")
            switch point {
            // Two committer threads rename chunk files: one other rename
            // may land between a rename and its count.
            case "chunk-renamed":
                XCTAssertTrue((1...2).contains(newChunks.count), "\(point): \(newChunks.count) chunks renamed into place")
                XCTAssertFalse(complete || hasMap, point)
            case "chunk-renamed:3":
                XCTAssertTrue((3...4).contains(newChunks.count), "\(point): \(newChunks.count) chunks renamed into place")
                XCTAssertFalse(complete || hasMap, point)
            case "map-before-rename":
                XCTAssertEqual(newChunks.count, 4, point)
                XCTAssertEqual(mapTemps.count, 1, "\(point): the map waits under its temp name")
                XCTAssertFalse(complete || hasMap, point)
            case "map-written":
                XCTAssertTrue(hasMap && mapTemps.isEmpty, point)
                XCTAssertEqual(E2E.mapChunks(job, id).count, 10)
                XCTAssertFalse(complete, point)
            case "rev-before-complete":
                XCTAssertTrue(hasMap, point)
                XCTAssertEqual(revTemps.count, 1, "\(point): the complete .rev waits under its temp name")
                let text = (try? String(contentsOfFile: job + "/" + (revTemps.first ?? "-"), encoding: .utf8)) ?? ""
                XCTAssertTrue(text.contains("duration: "), text)
                XCTAssertFalse(complete, "\(point): the revision on disk has no duration yet")
            default:  // rev-complete
                XCTAssertTrue(complete, "\(point): the revision is complete")
                XCTAssertTrue(revTemps.isEmpty, point)
                expected[id] = hash
                assertRestores(job, id, hash, "killed at \(point)")
            }
            // Whatever the step, `last` still names the previous revision
            // and every complete revision restores bit-exact.
            XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: job + "/last.rev"), lastBefore, point)
            for rev in revs where (rev["complete"] as? Bool) == true {
                assertRestores(job, rev["uuid"] as! String, expected[rev["uuid"] as! String], "after a kill at \(point)")
            }

            // The next backup removes the incomplete revision and every temp
            // file, and succeeds.
            let next = E2E.backy(["-b", job, "backup", "daily"])
            XCTAssertEqual(next.code, 0, "\(point): \(next.stderr)")
            let after = E2E.revisions(job)
            XCTAssertTrue(after.allSatisfy { ($0["complete"] as? Bool) == true }, "\(point): no incomplete revision left")
            XCTAssertEqual(after.count, before.count + (complete ? 2 : 1), point)
            if !complete { XCTAssertFalse(after.contains { ($0["uuid"] as! String) == id }, "\(point): the incomplete one is gone") }
            let newest = after.last?["uuid"] as? String ?? ""
            expected[newest] = hash
            XCTAssertEqual(topFiles(job, containing: ".tmp-"), [], "\(point): no metadata temp files")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job + "/chunks/.tmp"), [], "\(point): no chunk temp files")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job + "/.pins"), ["gate"], "\(point): no pins of dead sessions")
            if !complete { XCTAssertEqual(topFiles(job, containing: id), [], "\(point): no file of the killed revision") }
            XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: job + "/last.rev"), newest + ".rev", point)
            for rev in after { assertRestores(job, rev["uuid"] as! String, expected[rev["uuid"] as! String], "after the backup following \(point)") }
        }
        // Purge leaves exactly the chunks the revisions name.
        XCTAssertEqual(E2E.backy(["-b", job, "purge"]).code, 0)
        var named = Set<String>()
        for id in E2E.revisionIDs(job) { named.formUnion(E2E.mapChunks(job, id)) }
        named.remove(String(repeating: "0", count: 64))
        let left = Set(E2E.files(in: job + "/chunks", suffix: ".chunk").filter { !$0.contains("/.tmp/") }
            .map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension })
        XCTAssertEqual(left, named)
        print("crash points: \(points.count) backups killed at \(points.joined(separator: ", ")); \(expected.count) revisions bit-exact")
    }
}
