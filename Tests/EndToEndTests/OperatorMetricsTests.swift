// OperatorMetricsTests: Prometheus metrics end to end (issue 16, point 4): a
// real scheduler with metrics-addrs/metrics-port, /metrics scraped with curl
// and parsed strictly, values checked against the job directories; `backy
// metrics --textfile` writes the same atomically; metrics are off by
// default; bind errors of the NBD server and the metrics listener are one
// readable line.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class OperatorMetricsTests: XCTestCase {
    func testSchedulerServesMetricsAndTextfileMatches() throws {
        let mport = E2E.freePort()
        let s = SchedulerHarness(self, schedules: "  daily: {daily: {interval: 1d, keep: 3}}",
                                 extraGlobal: "  metrics-addrs: 127.0.0.1\n  metrics-port: \(mport)")
        s.addJob("alpha", schedule: "daily", size: 6 << 20)
        s.jobsYAML.append("  broken:\n    schedule: daily\n    source: {type: file, filename: images/missing.img}")
        s.start()
        XCTAssertTrue(s.console("runall").contains("Triggered immediate run for broken"))
        XCTAssertTrue(s.wait(timeout: 60) { s.logText.contains("alpha: finished backup with return code 0") }, s.logText)
        XCTAssertTrue(s.wait(timeout: 60) { s.logText.contains("broken: retrying in") }, s.logText)
        // Both runs over (the backup's purge too): nothing running or queued.
        XCTAssertTrue(s.wait(timeout: 60) { s.logText.contains("alpha: finished purging") && !s.console("status").contains("running") }, s.logText)
        XCTAssertTrue(s.logText.contains("Serving metrics on 127.0.0.1:\(mport) /metrics"), s.logText)

        let scrape = try Operator.curl(["http://127.0.0.1:\(mport)/metrics"])
        XCTAssertEqual(scrape.status, 200, scrape.body)
        let samples = try Operator.parseMetrics(scrape.body)
        // Label `job` only, never a revision id.
        for sm in samples { XCTAssertTrue(sm.labels.isEmpty || Array(sm.labels.keys) == ["job"], "\(sm)") }
        let alpha = s.base + "/alpha"
        let revs = E2E.statusRevisions(E2E.backy(["-b", alpha, "status", "--json"]).stdout)
        let ts = try XCTUnwrap(revs.first?["timestamp"] as? String)
        let epoch = try XCTUnwrap(ISO8601DateFormatter().date(from: String(ts.prefix(19)) + "Z")).timeIntervalSince1970
        XCTAssertEqual(Operator.value(samples, "backy_job_last_success_timestamp_seconds", job: "alpha"), epoch)
        XCTAssertEqual(Operator.value(samples, "backy_job_revisions", job: "alpha"), 1)
        XCTAssertEqual(Operator.value(samples, "backy_job_consecutive_failures", job: "alpha"), 0)
        XCTAssertEqual(Operator.value(samples, "backy_job_consecutive_failures", job: "broken"), 1)
        XCTAssertEqual(Operator.value(samples, "backy_job_stored_bytes", job: "alpha"), Double(Operator.chunkFiles(alpha).values.reduce(0, +)))
        XCTAssertEqual(Operator.value(samples, "backy_job_chunks", job: "alpha"), 2, "6 MiB: two chunks")
        XCTAssertEqual(Operator.value(samples, "backy_job_sla_ok", job: "alpha"), 1)
        XCTAssertNotNil(Operator.value(samples, "backy_job_last_duration_seconds", job: "alpha"))
        XCTAssertNil(Operator.value(samples, "backy_job_last_success_timestamp_seconds", job: "broken"))
        XCTAssertEqual(Operator.value(samples, "backy_scheduler_worker_limit"), 2, "the harness configures worker-limit: 2")
        XCTAssertEqual(Operator.value(samples, "backy_scheduler_jobs"), 2)
        XCTAssertEqual(Operator.value(samples, "backy_scheduler_jobs_running"), 0)
        XCTAssertEqual(Operator.value(samples, "backy_scheduler_jobs_queued"), 0)
        XCTAssertEqual(Operator.value(samples, "backy_metrics_scrapes_total"), 1)
        // A verify shows up as the last verification time (after the cache's age, or at once in the textfile).
        XCTAssertEqual(E2E.backy(["-b", alpha, "verify", "-r", "0"]).code, 0)

        // HEAD, other paths, other methods.
        XCTAssertEqual(try Operator.curl(["-I", "http://127.0.0.1:\(mport)/metrics"]).status, 200)
        XCTAssertEqual(try Operator.curl(["http://127.0.0.1:\(mport)/"]).status, 404)
        XCTAssertEqual(try Operator.curl(["-X", "POST", "-d", "x", "http://127.0.0.1:\(mport)/metrics"]).status, 405)

        // backy metrics --textfile: the same series, written atomically.
        // It reads the status file, which the scheduler writes as soon as a
        // run has finished.
        XCTAssertTrue(s.wait(timeout: 30) {
            ((try? String(contentsOfFile: s.statusFile, encoding: .utf8)) ?? "").split(separator: "\n")
                .contains { $0.contains("job: alpha,") && $0.contains(" revisions: 1,") }
        }, (try? String(contentsOfFile: s.statusFile, encoding: .utf8)) ?? "no status file")
        let dir = E2E.tempDir(self, "textfile")
        let file = dir + "/backy.prom"
        let r = E2E.backy(["metrics", "-c", s.config, "--textfile", file])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["backy.prom"], "no temp file left")
        let mode = (try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int) ?? 0
        XCTAssertEqual(mode, 0o644)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let tf = try Operator.parseMetrics(text)
        let statusText = (try? String(contentsOfFile: s.statusFile, encoding: .utf8)) ?? ""
        let served = Set(samples.map { "\($0.name)\($0.labels)" }).subtracting(["backy_metrics_scrapes_total[:]"])
        var written = Set(tf.map { "\($0.name)\($0.labels)" })
        written.remove("backy_job_last_verification_timestamp_seconds[\"job\": \"alpha\"]")
        written.remove("backy_job_oldest_verification_timestamp_seconds[\"job\": \"alpha\"]")
        XCTAssertEqual(written, served, statusText)
        for name in ["backy_job_last_success_timestamp_seconds", "backy_job_revisions", "backy_job_stored_bytes", "backy_job_consecutive_failures"] {
            XCTAssertEqual(Operator.value(tf, name, job: "alpha"), Operator.value(samples, name, job: "alpha"), name)
        }
        XCTAssertEqual(Operator.value(tf, "backy_job_verified_ratio", job: "alpha"), 1, "verify -r 0 read every chunk")
        let verified = try XCTUnwrap(Operator.value(tf, "backy_job_last_verification_timestamp_seconds", job: "alpha"))
        XCTAssertLessThan(abs(verified - Date().timeIntervalSince1970), 120)
        // stdout without --textfile.
        let out = E2E.backy(["metrics", "-c", s.config])
        XCTAssertEqual(out.code, 0, out.stderr)
        XCTAssertEqual(Set(try Operator.parseMetrics(out.out).map(\.name)), Set(tf.map(\.name)))

        // The metrics listener's port is taken: one readable line, the scheduler goes on.
        XCTAssertEqual(s.stop(), 0)
        let taken = E2E.freePort()
        let s2 = SchedulerHarness(self, schedules: "  daily: {daily: {interval: 1d, keep: 3}}",
                                  extraGlobal: "  metrics-addrs: 127.0.0.1\n  metrics-port: \(taken)")
        s2.addJob("beta", schedule: "daily")
        let blocker = try Listener(port: taken)
        s2.start()
        XCTAssertTrue(s2.wait(timeout: 10) { s2.logText.contains("metrics: cannot listen on") }, s2.logText)
        XCTAssertTrue(s2.logText.contains("ERROR metrics: cannot listen on 127.0.0.1:\(taken): Address already in use"), s2.logText)
        XCTAssertFalse(s2.logText.contains("errno"), s2.logText)
        XCTAssertEqual(s2.stop(), 0)
        _ = blocker
    }

    func testMetricsOffByDefaultAndNBDBindError() throws {
        let s = SchedulerHarness(self, schedules: "  daily: {daily: {interval: 1d, keep: 3}}")
        s.addJob("gamma", schedule: "daily")
        s.start()
        XCTAssertTrue(s.console("run gamma").contains("Triggered"))
        XCTAssertTrue(s.wait(timeout: 60) { s.logText.contains("gamma: finished backup with return code 0") }, s.logText)
        XCTAssertFalse(s.logText.contains("metrics"), s.logText)
        // Nothing listens on the default metrics port because of us.
        XCTAssertFalse(s.logText.contains("9750"))
        // nbd-server on a port in use: one line, no library internals.
        let port = E2E.freePort()
        let blocker = try Listener(port: port)
        let r = E2E.backy(["-b", s.base + "/gamma", "nbd-server", "-p", String(port)])
        XCTAssertEqual(r.code, 1)
        XCTAssertEqual(r.stderr, "Error: cannot listen on 127.0.0.1:\(port): Address already in use (another program, or another backy, listens there)\n")
        _ = blocker
        XCTAssertEqual(s.stop(), 0)
    }
}

/// A TCP listener on 127.0.0.1 that holds a port until it is released.
final class Listener {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard ok, listen(fd, 4) == 0 else {
            close(fd)
            throw NSError(domain: "listener", code: Int(errno))
        }
    }

    deinit { close(fd) }
}
