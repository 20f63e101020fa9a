// OperatorOutputTests: scriptable output and polish, end to end (issue 16,
// points 2 and 6): `backup --json` and `status --json` parsed and checked
// against the job directory itself, the status table (full headers, Stored,
// "1 revision", incomplete revisions), --version, log timestamps with their
// zone, every result printed once, --help naming the new commands.
import Foundation
import XCTest

final class OperatorOutputTests: XCTestCase {
    func testBackupJSONStatusJSONAndTable() throws {
        let seed = Operator.seed(1601)
        let t = Operator.job(self, mib: 9, seed: seed)
        let b1 = E2E.backy(["-b", t.job, "backup", "--json", "daily,weekly"])
        XCTAssertEqual(b1.code, 0, b1.stderr)
        // stdout is exactly one JSON object; the log stays on stderr.
        let first = try XCTUnwrap(try JSONSerialization.jsonObject(with: b1.stdout) as? [String: Any], b1.out)
        let id1 = try XCTUnwrap(first["id"] as? String)
        XCTAssertTrue(first["parent"] is NSNull, "\(first)")
        XCTAssertEqual(first["tags"] as? [String], ["daily", "weekly"])
        XCTAssertEqual(first["trust"] as? String, "trusted")
        XCTAssertEqual(first["complete"] as? Bool, true)
        let stats = try XCTUnwrap(first["stats"] as? [String: Any])
        XCTAssertEqual(stats["chunks"] as? Int, 3, "9 MiB = 3 chunks of 4 MiB")
        XCTAssertEqual(stats["bytes_written"] as? Int, 9 << 20)
        XCTAssertGreaterThan(first["duration"] as? Double ?? 0, 0)
        XCTAssertTrue(b1.stderr.contains("New revision \(id1)"), b1.stderr)

        let filesAfterFirst = Operator.chunkFiles(t.job)
        E2E.write(t.image, E2E.randomBytes(4096, seed: seed &+ 1), at: 5 << 20)
        let b2 = E2E.backy(["-b", t.job, "backup", "--json", "daily"])
        XCTAssertEqual(b2.code, 0, b2.stderr)
        let second = try XCTUnwrap(try JSONSerialization.jsonObject(with: b2.stdout) as? [String: Any])
        XCTAssertEqual(second["parent"] as? String, id1)
        XCTAssertEqual((second["stats"] as? [String: Any])?["chunks_written"] as? Int, 1, "one chunk changed")

        // status --json: the revisions and the store, against the files.
        let st = E2E.backy(["-b", t.job, "status", "--json"])
        XCTAssertEqual(st.code, 0, st.stderr)
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: st.stdout) as? [String: Any])
        let revs = try XCTUnwrap(doc["revisions"] as? [[String: Any]])
        XCTAssertEqual(revs.map { $0["uuid"] as? String }, [id1, second["id"] as? String])
        XCTAssertEqual(revs.map { $0["complete"] as? Bool }, [true, true])
        let store = try XCTUnwrap(doc["store"] as? [String: Any])
        let files = Operator.chunkFiles(t.job)
        XCTAssertEqual(store["chunks"] as? Int, files.count)
        XCTAssertEqual(store["chunks"] as? Int, 4, "3 chunks, then one changed")
        XCTAssertEqual(store["stored_bytes"] as? Int, files.values.reduce(0, +))
        let du = E2E.run("/usr/bin/du", ["-s", "-B1", t.job]).out.split(separator: "\t").first.flatMap { Int($0) } ?? -1
        XCTAssertEqual(store["disk_bytes"] as? Int, du, "disk use as du -s -B1 counts it")
        let verification = try XCTUnwrap(store["verification"] as? [String: Any])
        XCTAssertEqual(verification["never_verified_chunks"] as? Int, 4)
        XCTAssertEqual(E2E.backy(["-b", t.job, "verify", "-r", "0"]).code, 0)
        let after = try XCTUnwrap(try JSONSerialization.jsonObject(with: E2E.backy(["-b", t.job, "status", "--json"]).stdout) as? [String: Any])
        let v2 = try XCTUnwrap((after["store"] as? [String: Any])?["verification"] as? [String: Any])
        XCTAssertEqual(v2["never_verified_chunks"] as? Int, 1, "the newest revision's 3 chunks were read back; the replaced one not")
        XCTAssertEqual(v2["verified_percent"] as? Double, 75)

        // An interrupted backup's revision: marked incomplete, in text and JSON.
        let revFile = t.job + "/\(id1).rev"
        let text = try String(contentsOfFile: revFile, encoding: .utf8)
        // The stats are one flow mapping: drop its duration (as a backup that
        // did not finish leaves it).
        let cut = text.replacingOccurrences(of: #"duration: [0-9.e-]+, "#, with: "", options: .regularExpression)
        XCTAssertNotEqual(cut, text, "the .rev has a duration to remove")
        try FileManager.default.removeItem(atPath: revFile)
        try cut.write(toFile: revFile, atomically: true, encoding: .utf8)
        let table = E2E.backy(["-b", t.job, "status"])
        XCTAssertEqual(table.code, 0, table.stderr)
        let lines = table.out.components(separatedBy: "\n")
        func cells(_ l: String) -> [String] {
            l.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        XCTAssertEqual(cells(lines[1]), ["Date (UTC)", "ID", "Size", "Stored", "Duration", "Tags", "Trust"], table.out)
        let row1 = cells(try XCTUnwrap(lines.first { $0.contains(id1) }))
        XCTAssertEqual(Array(row1[2...]), ["9.00 MiB", "-", "-", "daily,weekly", "incomplete"], table.out)
        let row2 = cells(try XCTUnwrap(lines.first { $0.contains(second["id"] as! String) }))
        // Stored: what the second backup added, i.e. the one new chunk file.
        let added = files.filter { filesAfterFirst[$0.key] == nil }
        XCTAssertEqual(added.count, 1)
        XCTAssertEqual(second["bytes_stored"] as? Int, added.values.first)
        XCTAssertEqual(added.values.first, (4 << 20) + 16, "random data is stored raw, with the 16-byte header")
        XCTAssertEqual(row2[3], "4.00 MiB", "\(row2)")
        XCTAssertTrue(row2[4].hasSuffix(" s"), "\(row2)")
        XCTAssertEqual(row2[5], "daily")
        XCTAssertEqual(row2[6], "verified")
        XCTAssertTrue(table.out.contains("\n2 revisions containing 18.00 MiB data (estimated)\n"), table.out)
        XCTAssertTrue(table.out.contains("\n4 chunks; 1 never verified at rest"), table.out)
        XCTAssertTrue(table.out.contains(" on disk for the whole job\n"), table.out)
        let json = E2E.statusRevisions(E2E.backy(["-b", t.job, "status", "--json"]).stdout)
        XCTAssertEqual(json.map { $0["complete"] as? Bool }, [false, true])
        // One revision: singular.
        XCTAssertEqual(E2E.backy(["-b", t.job, "forget", "-r", id1]).code, 0)
        XCTAssertTrue(E2E.backy(["-b", t.job, "status"]).out.contains("\n1 revision containing 9.00 MiB data (estimated)\n"))
    }

    func testVersionHelpAndLogZone() throws {
        let v = E2E.backy(["--version"])
        XCTAssertEqual(v.code, 0, v.stderr)
        XCTAssertEqual(v.out, "backy 3.0.0\nstore format: chunked-sha256 (chunk files v1, maps v1); also reads backy 2.x revisions (chunked v1/v2, cowfile)\n")
        let help = E2E.backy(["--help"])
        for cmd in ["check-config", "expire", "metrics", "--version", "-q"] {
            XCTAssertTrue(help.out.contains(cmd), "--help names \(cmd):\n\(help.out)")
        }
        XCTAssertTrue(E2E.backy(["backup", "--help"]).out.contains("--json"))
        XCTAssertTrue(E2E.backy(["purge", "--help"]).out.contains("--dry-run"))
        XCTAssertTrue(E2E.backy(["forget", "--help"]).out.contains("--dry-run"))
        XCTAssertTrue(E2E.backy(["expire", "--help"]).out.contains("--dry-run"))

        // Log lines carry their zone.
        let t = Operator.job(self, mib: 1, seed: Operator.seed(1602))
        let log = t.dir + "/log"
        XCTAssertEqual(E2E.backy(["-l", log, "-b", t.job, "backup", "daily"]).code, 0)
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        XCTAssertGreaterThan(lines.count, 3)
        for l in lines {
            XCTAssertNotNil(l.range(of: #"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00 \[\d+\] (DEBUG|INFO|WARNING|ERROR) "#, options: .regularExpression), String(l))
        }
    }

    func testResultsArePrintedOnce() throws {
        let seed = Operator.seed(1603)
        let t = Operator.job(self, mib: 5, seed: seed)
        XCTAssertEqual(E2E.backy(["-b", t.job, "backup", "daily"]).code, 0)
        E2E.write(t.image, E2E.randomBytes(4 << 20, seed: seed &+ 1), at: 0)
        XCTAssertEqual(E2E.backy(["-b", t.job, "backup", "daily"]).code, 0)
        let ids = E2E.revisionIDs(t.job)
        // What a terminal shows: stdout and stderr together.
        let f = E2E.run("/bin/sh", ["-c", "\"$0\" -b \"$1\" forget -r \"$2\" 2>&1", E2E.binary, t.job, ids[0]])
        XCTAssertEqual(f.code, 0)
        XCTAssertEqual(f.out.components(separatedBy: "Forgot revision").count - 1, 1, f.out)
        XCTAssertEqual(f.out, "Forgot revision \(ids[0]) [daily]\n")
        let p = E2E.run("/bin/sh", ["-c", "\"$0\" -b \"$1\" purge 2>&1", E2E.binary, t.job])
        XCTAssertEqual(p.code, 0)
        let lines = p.out.split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.hasPrefix("Purging:") || $0.hasPrefix("Purged") }, ["Purging: 1 chunks"], p.out)
        // The job log has the forget, once.
        let jobLog = try String(contentsOfFile: t.job + "/backy.log", encoding: .utf8)
        XCTAssertEqual(jobLog.components(separatedBy: "Forgot revision \(ids[0])").count - 1, 1, jobLog)
        // -q: only errors.
        let q = E2E.backy(["-q", "-b", t.job, "backup", "daily"])
        XCTAssertEqual(q.code, 0)
        XCTAssertEqual(q.stderr, "")
        XCTAssertEqual(q.out, "")
        let qe = E2E.backy(["-q", "-b", t.job, "restore", "-r", "nonexistent", t.dir + "/x"])
        XCTAssertEqual(qe.code, 1)
        XCTAssertTrue(qe.stderr.hasPrefix("Error: "), qe.stderr)
        XCTAssertEqual(qe.stderr.split(separator: "\n").count, 1, qe.stderr)
    }
}
