// CrashTests: SIGKILL `backup` at random moments; every revision that was
// complete before stays bit-exact, at most one incomplete revision is left,
// and the next backup removes it and succeeds.
import Foundation
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

        var rng = SystemRandomNumberGenerator()
        var killed = 0, finished = 0
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
            try p.run()
            usleep(useconds_t(Double.random(in: 0...(full * 1.1), using: &rng) * 1e6))
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                killed += 1
            } else {
                finished += 1
            }
            p.waitUntilExit()
            // Revisions complete now that were not before belong to this image.
            let st = E2E.backy(["-b", job, "status", "--json"])
            XCTAssertEqual(st.code, 0, st.stderr)
            let revs = try JSONSerialization.jsonObject(with: st.stdout) as! [[String: Any]]
            let incomplete = revs.filter { ($0["complete"] as? Bool) != true }
            XCTAssertLessThanOrEqual(incomplete.count, 1, "at most one incomplete revision")
            for r in revs where (r["complete"] as? Bool) == true {
                let id = r["uuid"] as! String
                if expected[id] == nil { expected[id] = hash }
            }
            // Spot-check the oldest and the newest complete revision.
            let complete = revs.filter { ($0["complete"] as? Bool) == true }.map { $0["uuid"] as! String }
            for id in Set([complete.first!, complete.last!]) {
                let r = E2E.backy(["-b", job, "restore", "-r", id, "-"])
                XCTAssertEqual(r.code, 0, r.stderr)
                XCTAssertEqual(E2E.sha256(r.stdout), expected[id], "revision \(id) after round \(round)")
            }
        }
        // The job still works: the next backup cleans up and succeeds.
        let hash = E2E.sha256(file: img)
        let r = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let revs = try JSONSerialization.jsonObject(with: E2E.backy(["-b", job, "status", "--json"]).stdout) as! [[String: Any]]
        XCTAssertTrue(revs.allSatisfy { ($0["complete"] as? Bool) == true }, "no incomplete revision left")
        if let last = revs.last?["uuid"] as? String, expected[last] == nil { expected[last] = hash }
        for rev in revs {
            let id = rev["uuid"] as! String
            let out = E2E.backy(["-b", job, "restore", "-r", id, "-"])
            XCTAssertEqual(out.code, 0, out.stderr)
            XCTAssertEqual(E2E.sha256(out.stdout), expected[id], "revision \(id) at the end")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job + "/chunks/.tmp").count, 0, "no chunk temp files after a clean backup")
        XCTAssertGreaterThanOrEqual(killed, kills)
        print("crash test: \(killed) backups killed with SIGKILL, \(finished) finished before the kill, \(revs.count) revisions all bit-exact")
    }
}
