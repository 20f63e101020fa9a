// NBDMultiJobTests: one NBD server for every job. `backy nbd-server -c
// CONFIG` serves each job of a scheduler configuration as JOB/REV
// (NBD_OPT_LIST: JOB/latest and every revision, with descriptions), picks
// up new and removed revisions without a restart, and purge keeps what a
// session reads; the scheduler runs the same server in-process
// (`nbd-server: {in-scheduler: true}`), following reloads and expiry.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class NBDMultiJobTests: XCTestCase {
    /// NBD_OPT_LIST as (name, description) pairs, through Python libnbd.
    func list(_ uri: String) throws -> [(String, String)] {
        let script = """
            import nbd, sys
            h = nbd.NBD(); h.set_opt_mode(True); h.connect_uri(sys.argv[1])
            out = []
            h.opt_list(lambda name, desc: out.append((name, desc)) or 0)
            h.opt_abort()
            for n, d in out: print(n + '\\t' + d)
            """
        let r = try ServerTest.python(script, [uri])
        XCTAssertEqual(r.code, 0, r.stderr)
        return r.out.split(separator: "\n").map { l in
            let p = l.split(separator: "\t", maxSplits: 1).map(String.init)
            return (p[0], p.count > 1 ? p[1] : "")
        }
    }

    func testEveryJobOfAConfigAsJobSlashRevision() throws {
        let nbdcopy = try ServerTest.tool("nbdcopy")
        let nbdinfo = try ServerTest.tool("nbdinfo")
        let dir = E2E.tempDir(self, "nbd-multi")
        let base = dir + "/base"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        // vm1: two revisions (the image changes between them); vm2: one.
        let img1 = dir + "/vm1.img", img2 = dir + "/vm2.img"
        E2E.write(img1, E2E.randomBytes(6 << 20, seed: ServerTest.seed + 30), at: 0)
        E2E.write(img2, E2E.randomBytes(5 << 20, seed: ServerTest.seed + 31), at: 0)
        XCTAssertEqual(E2E.backy(["-b", base + "/vm1", "init", "file", img1]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", base + "/vm1", "backup", "daily"]).code, 0)
        let old1 = dir + "/vm1-old.img"
        XCTAssertEqual(E2E.run("/bin/cp", [img1, old1]).code, 0)
        E2E.write(img1, E2E.randomBytes(1 << 20, seed: ServerTest.seed + 32), at: 2 << 20)
        sleep(1)
        XCTAssertEqual(E2E.backy(["-b", base + "/vm1", "backup", "weekly"]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", base + "/vm2", "init", "file", img2]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", base + "/vm2", "backup", "daily"]).code, 0)
        let r1 = E2E.revisionIDs(base + "/vm1"), r2 = E2E.revisionIDs(base + "/vm2")
        XCTAssertEqual(r1.count, 2)
        XCTAssertEqual(r2.count, 1)
        let port = E2E.freePort()
        try """
            global:
              base-dir: base
            schedules:
              s: {daily: {interval: 1d, keep: 3}, weekly: {interval: 7d, keep: 3}}
            jobs:
              vm1: {schedule: s, source: {type: file, filename: vm1.img}}
              vm2: {schedule: s, source: {type: file, filename: vm2.img}}
              vm3: {schedule: s, source: {type: file, filename: vm3.img}}
            nbd-server:
              port: \(port)

            """.write(toFile: dir + "/backy.conf", atomically: true, encoding: .utf8)
        let s = try BackyServer(["nbd-server", "-c", dir + "/backy.conf"], log: dir + "/multi.log", test: self) {
            NBDServerProcess.canConnect(port)
        }
        let url = "nbd://127.0.0.1:\(port)"
        let l = try list(url)
        XCTAssertEqual(l.map(\.0), ["vm1/latest", "vm1/" + r1[0], "vm1/" + r1[1], "vm2/latest", "vm2/" + r2[0]], "\(l)")
        XCTAssertTrue(l[0].1.hasPrefix("newest revision of vm1: \(r1[1]), "), l[0].1)
        XCTAssertTrue(l[1].1.hasSuffix("UTC, tags: daily, trust: trusted"), l[1].1)
        // Every spec works after JOB/; JOB alone is its newest revision.
        for (name, want) in [("vm1/1", old1), ("vm1/daily", old1), ("vm1/" + r1[0], old1), ("vm1/latest", img1),
                             ("vm1", img1), ("vm2/0", img2)] {
            let out = dir + "/copy.img"
            let r = E2E.run(nbdcopy, [url + "/" + name, out])
            XCTAssertEqual(r.code, 0, "\(name): \(r.stderr)")
            XCTAssertEqual(E2E.sha256(file: out), E2E.sha256(file: want), name)
            try? FileManager.default.removeItem(atPath: out)
        }
        XCTAssertEqual(E2E.run(nbdinfo, [url + "/vm9/latest"]).code, 1, "unknown job")
        XCTAssertEqual(E2E.run(nbdinfo, [url + "/vm3/latest"]).code, 1, "a job without backups")
        XCTAssertEqual(E2E.run(nbdinfo, [url + "/vm1/nosuchtag"]).code, 1)

        // A new revision appears, a forgotten one disappears, no restart.
        XCTAssertEqual(E2E.backy(["-b", base + "/vm2", "backup", "monthly"]).code, 0)
        let r2b = E2E.revisionIDs(base + "/vm2")
        XCTAssertEqual(r2b.count, 2)
        XCTAssertTrue(try list(url).map(\.0).contains("vm2/" + r2b[1]))
        XCTAssertEqual(E2E.run(nbdinfo, [url + "/vm2/monthly"]).code, 0)

        // A session on vm1's older revision survives forget + purge.
        let script = """
            import nbd, sys, hashlib, subprocess
            url, backy, job, rev, size = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
            h = nbd.NBD(); h.connect_uri(url + '/vm1/' + rev)
            h.pread(4096, 0)
            subprocess.run([backy, '-b', job, 'forget', '-r', rev], check=True, capture_output=True)
            p = subprocess.run([backy, '-b', job, 'purge'], capture_output=True)
            assert p.returncode == 0, p.stderr
            m = hashlib.sha256()
            off = 0
            while off < size:
                n = min(1 << 20, size - off)
                m.update(h.pread(n, off)); off += n
            print(m.hexdigest())
            """
        let r = try ServerTest.python(script, [url, E2E.binary, base + "/vm1", r1[0], String(6 << 20)])
        XCTAssertEqual(r.out.trimmingCharacters(in: .whitespacesAndNewlines), E2E.sha256(file: old1), r.stderr)
        let after = try list(url).map(\.0)
        XCTAssertFalse(after.contains("vm1/" + r1[0]), "\(after)")
        XCTAssertEqual(E2E.run(nbdinfo, [url + "/vm1/daily"]).code, 1)
        XCTAssertEqual(s.stop(), 0)

        // -b and -c together are a usage error.
        let both = E2E.backy(["-b", base + "/vm1", "nbd-server", "-c", dir + "/backy.conf"])
        XCTAssertEqual(both.code, 2)
        XCTAssertTrue(both.stderr.contains("give -b DIR (one job) or -c CONFIG (every job), not both"), both.stderr)
    }

    func testSchedulerServesEveryJobInProcess() throws {
        let nbdcopy = try ServerTest.tool("nbdcopy")
        let nbdinfo = try ServerTest.tool("nbdinfo")
        let nbdPort = E2E.freePort()
        let s = SchedulerHarness(self, schedules: "  quick:\n    quick: {interval: 1s, keep: 1}",
                                 extraGlobal: "nbd-server:\n  in-scheduler: true\n  port: \(nbdPort)")
        s.addJob("test01", schedule: "quick", size: 3 << 20)
        s.addJob("test02", schedule: "quick", size: 2 << 20)
        s.start()
        XCTAssertTrue(NBDServerProcess.canConnect(nbdPort), s.logText)
        let url = "nbd://127.0.0.1:\(nbdPort)"
        XCTAssertTrue(s.wait(timeout: 60) { s.revisions("test01").count >= 1 && s.revisions("test02").count >= 1 }, s.logText)
        let out = s.dir + "/copy.img"
        XCTAssertTrue(s.wait(timeout: 30) {
            E2E.run(nbdcopy, [url + "/test01/latest", out]).code == 0
                && E2E.sha256(file: out) == E2E.sha256(file: s.dir + "/images/test01.img")
        }, s.logText)
        // Expiry (keep 1, interval 1 s) removes older revisions: their
        // exports go, the newest stays servable.
        // The revision is taken from the server's own list (a revision read
        // from the job directory may be expired before the list is asked).
        let listed = try list(url).map(\.0).filter { $0.hasPrefix("test01/") && $0 != "test01/latest" }
        let first = String(try XCTUnwrap(listed.first, "\(listed)").dropFirst("test01/".count))
        XCTAssertEqual(first.count, 22, "a revision id: \(listed)")
        XCTAssertTrue(s.wait(timeout: 60) { !s.revisions("test01").contains(first) }, s.logText)
        XCTAssertFalse(try list(url).map(\.0).contains("test01/" + first))
        XCTAssertEqual(E2E.run(nbdinfo, [url + "/test01/" + first]).code, 1)
        XCTAssertTrue(s.wait(timeout: 10) { E2E.run(nbdinfo, [url + "/test01/latest"]).code == 0 })
        // A job added by reload is served too.
        s.addJob("test03", schedule: "quick", size: 1 << 20)
        s.writeConfig()
        XCTAssertTrue(s.console("reload").hasPrefix("Reloaded "))
        XCTAssertTrue(s.wait(timeout: 60) { E2E.run(nbdinfo, [url + "/test03/latest"]).code == 0 }, s.logText)
        XCTAssertTrue(s.logText.contains("NBD server for every job (export names JOB/REV) listening on 127.0.0.1:\(nbdPort)"), s.logText)
        XCTAssertEqual(s.stop(), 0)
        XCTAssertFalse(NBDServerProcess.canConnect(nbdPort), "the NBD server stops with the scheduler")
    }
}
