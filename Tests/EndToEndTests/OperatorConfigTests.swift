// OperatorConfigTests: configuration checks and dry runs end to end (issue
// 16, point 5): `check-config` on good, broken and unknown-key files; the
// unit runs it before start and reload; a running scheduler keeps its
// configuration when a reload brings a bad one; `forget`, `purge` and
// `expire --dry-run` change nothing (tree hash before and after) and name
// what the real run then removes, bytes included.
import Foundation
import XCTest

final class OperatorConfigTests: XCTestCase {
    func testCheckConfig() throws {
        let dir = E2E.tempDir(self, "cfg")
        try FileManager.default.createDirectory(atPath: dir + "/base", withIntermediateDirectories: true)
        let good = dir + "/good.conf"
        try """
            global:
              base-dir: base
              worker-limit: 2
            schedules:
              default: {daily: {interval: 1d, keep: 7}, weekly: {interval: 7d, keep: 4}}
            jobs:
              vm1: {schedule: default, source: {type: file, filename: /dev/null}}
              vm2: {schedule: default, source: {type: ceph-rbd, pool: rbd, image: vm2}}

            """.write(toFile: good, atomically: true, encoding: .utf8)
        var r = E2E.backy(["check-config", "-c", good])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(r.stderr, "")
        XCTAssertEqual(r.out, "\(good): OK: 2 jobs, 1 schedule\n")

        // Every error, each with its line; exit 1.
        let broken = dir + "/broken.conf"
        try """
            global:
              base-dir: base
              worker-limit: 0
              telnet-port: 99999
            schedules:
              default: {daily: {interval: 1x, keep: 7}}
              other: {daily: {interval: 1d, keep: -1}}
            jobs:
              vm1: {schedule: hourly, source: {type: file, filename: /dev/null}}
              vm2: {schedule: default, source: {type: nfs}}
              vm3: {schedule: other, source: {type: file}}

            """.write(toFile: broken, atomically: true, encoding: .utf8)
        r = E2E.backy(["check-config", "-c", broken])
        XCTAssertEqual(r.code, 1)
        let errors = r.stderr.split(separator: "\n").map(String.init)
        XCTAssertEqual(errors, [
            "Error: \(broken): line 3: global.worker-limit: expected an integer from 1 to 1000, found 0",
            "Error: \(broken): line 4: global.telnet-port: expected a port number from 1 to 65535, found 99999",
            "Error: \(broken): line 6: schedules.default.daily.interval: invalid interval \"1x\": expected an integer optionally followed by w, d, h, m or s",
            "Error: \(broken): line 7: schedules.other.daily.keep: expected a positive integer, found -1",
            "Error: \(broken): line 9: jobs.vm1.schedule: unknown schedule \"hourly\" (defined: default, other)",
            "Error: \(broken): line 10: jobs.vm2.source.type: unknown source type \"nfs\" (known: file, ceph-rbd, flyingcircus)",
            "Error: \(broken): line 11: jobs.vm3.source.filename: missing filename (required for type file)",
        ], r.stderr)
        XCTAssertEqual(r.out, "\(broken): 7 errors; the scheduler refuses it\n")
        // The scheduler stops at the first of them, the same line.
        let sched = E2E.backy(["scheduler", "-c", broken])
        XCTAssertEqual(sched.code, 1)
        XCTAssertEqual(sched.stderr, errors[0] + "\n")

        // Unknown keys: warnings with their lines, exit 0.
        let typo = dir + "/typo.conf"
        try """
            global:
              base-dir: base
              worker_limit: 4
            schedules:
              default: {daily: {interval: 1d, keep: 7, kepp: 3}}
            jobs:
              vm1: {schedule: default, source: {type: file, filename: /dev/null, compress: yes}, retries: 2}
            job:
              vm9: {}

            """.write(toFile: typo, atomically: true, encoding: .utf8)
        r = E2E.backy(["check-config", "-c", typo])
        XCTAssertEqual(r.code, 0, r.stderr)
        let warnings = r.stderr.split(separator: "\n").map(String.init)
        XCTAssertEqual(warnings.count, 5, r.stderr)
        XCTAssertTrue(warnings.contains { $0.hasPrefix("Warning: \(typo): line 8: job: unknown key, ignored (known: global, jobs, nbd-server, schedules)") }, r.stderr)
        XCTAssertTrue(warnings.contains { $0.hasPrefix("Warning: \(typo): line 3: global.worker_limit: unknown key, ignored (known: ") }, r.stderr)
        XCTAssertTrue(warnings.contains { $0.hasPrefix("Warning: \(typo): line 5: schedules.default.daily.kepp: unknown key, ignored") }, r.stderr)
        XCTAssertTrue(warnings.contains { $0.hasPrefix("Warning: \(typo): line 7: jobs.vm1.retries: unknown key, ignored") }, r.stderr)
        XCTAssertTrue(warnings.contains { $0.hasPrefix("Warning: \(typo): line 7: jobs.vm1.source.compress: unknown key, ignored") }, r.stderr)
        XCTAssertEqual(r.out, "\(typo): OK: 1 job, 1 schedule, 5 warnings\n")
        // A missing file, and a YAML syntax error.
        r = E2E.backy(["check-config", "-c", dir + "/nope.conf"])
        XCTAssertEqual(r.code, 1)
        XCTAssertEqual(r.stderr, "Error: configuration file \(dir)/nope.conf does not exist\n")
        try "global: {base-dir: [\n".write(toFile: dir + "/syntax.conf", atomically: true, encoding: .utf8)
        r = E2E.backy(["check-config", "-c", dir + "/syntax.conf"])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.hasPrefix("Error: \(dir)/syntax.conf: "), r.stderr)

        // The unit checks before start and reload.
        let unit = try String(contentsOfFile: packageRoot + "/contrib/backy-scheduler.service", encoding: .utf8)
        XCTAssertTrue(unit.contains("\nExecStartPre=/usr/local/bin/backy check-config -c /etc/backy.conf\n"), unit)
        XCTAssertTrue(unit.contains("\nExecReload=/usr/local/bin/backy check-config -c /etc/backy.conf\nExecReload=/bin/kill -HUP $MAINPID\n"), unit)
    }

    func testReloadRefusesABadConfiguration() throws {
        let s = SchedulerHarness(self, schedules: "  daily: {daily: {interval: 1d, keep: 3}}")
        s.addJob("one", schedule: "daily")
        s.start()
        XCTAssertTrue(s.console("run one").contains("Triggered"))
        XCTAssertTrue(s.wait(timeout: 60) { s.logText.contains("one: finished backup with return code 0") }, s.logText)
        let good = try String(contentsOfFile: s.config, encoding: .utf8)
        try good.replacingOccurrences(of: "schedule: daily", with: "schedule: hourly")
            .replacingOccurrences(of: "worker-limit: 2", with: "worker-limit: many")
            .write(toFile: s.config, atomically: true, encoding: .utf8)
        let reply = s.console("reload")
        XCTAssertTrue(reply.hasPrefix("Reload failed, keeping the running configuration: \(s.config): line "), reply)
        s.signal(SIGHUP)
        XCTAssertTrue(s.wait(timeout: 10) { s.logText.components(separatedBy: "Reload failed, keeping the running configuration").count - 1 >= 2 }, s.logText)
        XCTAssertTrue(s.logText.contains("ERROR Reload failed, keeping the running configuration: \(s.config): line 3: global.worker-limit: expected an integer from 1 to 1000, found \"many\""), s.logText)
        XCTAssertTrue(s.jobsRow("one").hasPrefix("| one "), "the job stays scheduled")
        XCTAssertEqual(E2E.backy(["check-config", "-c", s.config]).code, 1)
        XCTAssertEqual(s.stop(), 0)
    }

    func testDryRunsChangeNothing() throws {
        let seed = Operator.seed(1605)
        let dir = E2E.tempDir(self, "dry")
        try FileManager.default.createDirectory(atPath: dir + "/base", withIntermediateDirectories: true)
        let image = dir + "/vm.img"
        E2E.write(image, E2E.randomBytes(8 << 20, seed: seed), at: 0)
        let config = dir + "/backy.conf"
        try """
            global: {base-dir: base}
            schedules:
              quick: {fast: {interval: 1s, keep: 1}}
            jobs:
              vm: {schedule: quick, source: {type: file, filename: \(image)}}

            """.write(toFile: config, atomically: true, encoding: .utf8)
        let job = dir + "/base/vm"
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", image]).code, 0)
        // Three revisions tagged `fast`, each with one new chunk, one by hand.
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "fast"]).code, 0)
        for i in 1...2 {
            E2E.write(image, E2E.randomBytes(4096, seed: seed &+ UInt64(i)), at: UInt64(i) << 22)
            XCTAssertEqual(E2E.backy(["-b", job, "backup", "fast"]).code, 0)
        }
        E2E.write(image, E2E.randomBytes(4096, seed: seed &+ 9), at: 0)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "manual"]).code, 0)
        let ids = E2E.revisionIDs(job)
        XCTAssertEqual(ids.count, 4)
        sleep(2)

        // expire --dry-run: the two older `fast` revisions go (keep 1, interval 1 s).
        var before = Operator.treeHash(job)
        let ex = E2E.backy(["expire", "--dry-run", "-c", config, "vm"])
        XCTAssertEqual(ex.code, 0, ex.stderr)
        XCTAssertEqual(Operator.treeHash(job), before, "expire --dry-run changed the job directory")
        let exLines = ex.out.split(separator: "\n").map(String.init)
        XCTAssertEqual(exLines.count, 3, ex.out)
        XCTAssertTrue(exLines[0].hasPrefix("Revision \(ids[0]) (") && exLines[0].hasSuffix(") would lose [fast] and be removed"), ex.out)
        XCTAssertTrue(exLines[1].hasPrefix("Revision \(ids[1]) (") && exLines[1].hasSuffix(") would lose [fast] and be removed"), ex.out)
        // The bytes: what the real expiry and the next purge free, counted from the files.
        let chunksBefore = Operator.chunkFiles(job)
        let ownFiles = [ids[0], ids[1]].flatMap { [job + "/\($0).rev", job + "/\($0).map"] }
            .map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) ?? 0 }.reduce(0, +)
        let exReal = E2E.backy(["expire", "-c", config, "vm"])
        XCTAssertEqual(exReal.code, 0, exReal.stderr)
        XCTAssertEqual(E2E.revisionIDs(job), [ids[2], ids[3]])
        XCTAssertEqual(E2E.backy(["-b", job, "purge"]).code, 0)
        let freed = chunksBefore.filter { Operator.chunkFiles(job)[$0.key] == nil }.values.reduce(0, +)
        XCTAssertGreaterThan(freed, 0)
        XCTAssertEqual(exLines[2], "vm: 0 revisions would lose tags, 2 revisions would be removed, freeing \(byteText(freed + ownFiles)) (\(freed + ownFiles) bytes; chunks at the next purge)")

        // forget --dry-run: what removing a revision frees.
        before = Operator.treeHash(job)
        let fd = E2E.backy(["-b", job, "forget", "--dry-run", "-r", ids[2]])
        XCTAssertEqual(fd.code, 0, fd.stderr)
        XCTAssertEqual(Operator.treeHash(job), before, "forget --dry-run changed the job directory")
        let chunks2 = Operator.chunkFiles(job)
        let own2 = [job + "/\(ids[2]).rev", job + "/\(ids[2]).map"].map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) ?? 0 }.reduce(0, +)
        XCTAssertEqual(E2E.backy(["-b", job, "forget", "-r", ids[2]]).code, 0)
        // purge --dry-run: what purge would remove, then the real purge.
        before = Operator.treeHash(job)
        let pd = E2E.backy(["-b", job, "purge", "--dry-run"])
        XCTAssertEqual(pd.code, 0, pd.stderr)
        XCTAssertEqual(Operator.treeHash(job), before, "purge --dry-run changed the job directory")
        let p = E2E.backy(["-b", job, "purge"])
        XCTAssertEqual(p.code, 0, p.stderr)
        let gone = chunks2.filter { Operator.chunkFiles(job)[$0.key] == nil }
        let goneBytes = gone.values.reduce(0, +)
        XCTAssertEqual(gone.count, 1, "the revision's own chunk")
        XCTAssertTrue(fd.out.hasPrefix("Would forget revision \(ids[2]) from "), fd.out)
        XCTAssertTrue(fd.out.hasSuffix(" [fast]: \(byteText(own2)) of revision files now, 1 chunk only it uses (\(byteText(goneBytes))) at the next purge; \(own2 + goneBytes) bytes in all\n"), fd.out)
        XCTAssertEqual(pd.out, "Would purge 1 chunk (\(byteText(goneBytes)), \(goneBytes) bytes); \(chunks2.count - 1) in use stay\n")
        XCTAssertEqual(p.out, "Purging: 1 chunks\n")
        // Dry runs need no write access and leave no log.
        XCTAssertFalse(try String(contentsOfFile: job + "/backy.log", encoding: .utf8).contains("--dry-run"))
    }

    /// ByteFormat.flexible, independently: backy 2.4's units.
    func byteText(_ n: Int) -> String {
        if n == 1 { return "1 Byte" }
        if n < 1024 { return "\(n) Bytes" }
        var v = Double(n) / 1024
        for unit in ["kiB", "MiB", "GiB"] {
            if v < 1024 { return String(format: "%.2f %@", v, unit) }
            v /= 1024
        }
        return String(format: "%.2f TiB", v)
    }

    var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
}
