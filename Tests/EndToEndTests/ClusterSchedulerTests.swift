// ClusterSchedulerTests: several `backy scheduler`s (distinct --node, console
// ports, base directories and status files, the same jobs) share RADOS jobs
// through the jobs' leases, against a real throwaway Ceph cluster and the
// real binary (docs/rados.md, "Leases"): three schedulers and twelve jobs
// on short intervals run every slot of every job exactly once (from the
// jobs' revisions, each slot a cell of the job's grid, and from the
// schedulers' logs) and every node runs some; a scheduler killed with
// kill -9 while it runs two backups: the others run those jobs within lease
// + one interval, every earlier revision restores bit-exact, no lease of the
// dead node is left, and the restarted node takes work again; a scheduler
// that stalls (SIGSTOP) while its backup runs: the backup commits nothing
// once the lease may lapse, and the node that took the lease over fenced
// its revision; restore drills of a RADOS job run under its lease, once
// per interval across the nodes, recorded in the store. Images are random
// from a printed seed (BACKY_TEST_SEED replays one).
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class ClusterSchedulerTests: XCTestCase {
    nonisolated(unsafe) static var cluster: TestCephCluster?
    static let pool = "backy-nodes"

    override class func setUp() {
        super.setUp()
        cluster = TestCephCluster.withPool(prefix: "backy-leases", pool: pool)
    }

    override class func tearDown() {
        cluster?.stop()
        cluster = nil
        super.tearDown()
    }

    var cluster: TestCephCluster { ClusterSchedulerTests.cluster! }

    override func setUpWithError() throws {
        try TestCephCluster.require(ClusterSchedulerTests.cluster)
    }

    // MARK: - helpers

    /// One scheduler: its own directory (base-dir, status file, log,
    /// console port), the shared job list.
    final class Node {
        let name: String
        let dir: String
        let port: Int
        let env: [String: String]
        private(set) var process: Process?
        var base: String { dir + "/base" }
        var log: String { dir + "/scheduler.log" }
        var status: String { base + "/status" }
        var config: String { dir + "/backy.conf" }
        var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        init(_ test: XCTestCase, name: String, env: [String: String]) {
            self.name = name
            dir = E2E.tempDir(test, "node-\(name)")
            port = E2E.freePort()
            self.env = env
            try! FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
            test.addTeardownBlock { [weak self] in self?.kill9() }
        }

        func start(_ configText: String, file: StaticString = #filePath, line: UInt = #line) {
            try! configText.replacingOccurrences(of: "@PORT@", with: String(port)).write(toFile: config, atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: E2E.binary)
            p.arguments = ["-l", log, "scheduler", "-c", config, "--node", name]
            var e = ProcessInfo.processInfo.environment
            for (k, v) in env { e[k] = v }
            p.environment = e
            p.standardInput = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try! p.run()
            process = p
            let up = E2E.wait(timeout: 30) { (try? ConsoleClient(port: self.port, timeout: 2)) != nil || !p.isRunning }
            XCTAssertTrue(up && p.isRunning, "scheduler \(name) is up; log:\n\(logText.suffix(3000))", file: file, line: line)
        }

        var pid: pid_t { process?.processIdentifier ?? 0 }

        func console(_ line: String) -> String {
            do { return try ConsoleClient(port: port).ask(line) } catch { return "console error: \(error)" }
        }

        func kill9() {
            guard let p = process, p.isRunning else { return }
            kill(p.processIdentifier, SIGCONT)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }

        @discardableResult
        func stop(timeout: Double = 60) -> Int32? {
            guard let p = process, p.isRunning else { return process?.terminationStatus }
            kill(p.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(timeout)
            while p.isRunning && Date() < deadline { usleep(20_000) }
            return p.isRunning ? nil : p.terminationStatus
        }

        /// Log lines "<job>: <what>" of this node, with their times.
        func events(_ what: String) -> [(job: String, line: String)] {
            logText.components(separatedBy: "\n").compactMap { line in
                guard let r = line.range(of: ": " + what) else { return nil }
                let head = line[..<r.lowerBound]
                guard let sp = head.lastIndex(of: " ") else { return nil }
                return (String(head[head.index(after: sp)...]), line)
            }
        }
    }

    func seed() -> UInt64 {
        let s = ProcessInfo.processInfo.environment["BACKY_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        print("\(name): seed \(s) (BACKY_TEST_SEED=\(s) replays it)")
        return s
    }

    /// The shared configuration (the port is each node's own).
    /// The `global:` section of the nodes' configuration (each node puts
    /// its own port for @PORT@); `store`: every job in RADOS.
    func globalSection(lease: Int, workerLimit: Int = 2, store: Bool = true) -> String {
        """
            global:
              base-dir: base
              worker-limit: \(workerLimit)
              status-interval: 1
              telnet-addrs: 127.0.0.1
              telnet-port: @PORT@
            \(store ? "  store: rados:\(ClusterSchedulerTests.pool)\n" : "")  lease: \(lease)s

            """
    }

    func configText(jobs: [String], images: String, lease: Int, interval: Int, workerLimit: Int = 2, nodes: [String: String] = [:]) -> String {
        var text = globalSection(lease: lease, workerLimit: workerLimit) + """
            schedules:
              fast:
                slot: {interval: \(interval)s, keep: 200}
            jobs:

            """
        for j in jobs {
            text += "  \(j):\n    schedule: fast\n    source: {type: file, filename: \(images)/\(j).img}\n"
            if let n = nodes[j] { text += "    nodes: \(n)\n" }
        }
        return text
    }

    /// The complete revisions of a RADOS job (read through `dir`), with
    /// their times, oldest first.
    func completeRevisions(_ jobDir: String) -> [(id: String, time: Date, duration: Double)] {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return E2E.revisions(jobDir, env: cluster.env).compactMap { r -> (String, Date, Double)? in
            guard (r["complete"] as? Bool) == true, let id = r["uuid"] as? String, let ts = r["timestamp"] as? String,
                  let t = f.date(from: ts) ?? ISO8601DateFormatter().date(from: ts) else { return nil }
            return (id, t, (r["duration"] as? Double) ?? 0)
        }.sorted { $0.1 < $1.1 }
    }

    /// `rados ls` of a job's namespace.
    func objects(_ ns: String) -> [String] {
        let r = cluster.tool("rados", ["-p", ClusterSchedulerTests.pool, "-N", ns, "ls"])
        return r.out.split(separator: "\n").map(String.init)
    }

    /// Who holds the job's lease now (cookie prefixes), from `rados lock info`.
    func leaseHolders(_ ns: String) -> [String] {
        let r = cluster.tool("rados", ["-p", ClusterSchedulerTests.pool, "-N", ns, "lock", "info", "lease", "lease"])
        guard r.code == 0, let o = try? JSONSerialization.jsonObject(with: r.stdout) as? [String: Any],
              let lockers = o["lockers"] as? [[String: Any]] else { return [] }
        return lockers.compactMap { ($0["cookie"] as? String)?.split(separator: "/").first.map(String.init) }
    }

    /// The job's run record (the lease object's data).
    func runRecord(_ ns: String) -> [String: Any]? {
        let tmp = NSTemporaryDirectory() + "rec-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let r = cluster.tool("rados", ["-p", ClusterSchedulerTests.pool, "-N", ns, "get", "lease", tmp])
        guard r.code == 0, let d = FileManager.default.contents(atPath: tmp) else { return nil }
        return try? JSONSerialization.jsonObject(with: d) as? [String: Any]
    }

    /// The job's grid offset (seconds into each interval), from a status
    /// file's next_time_epoch while the job waits for its first slot.
    func offsets(_ statusFile: String, interval: Int) -> [String: Int] {
        guard let text = try? String(contentsOfFile: statusFile, encoding: .utf8) else { return [:] }
        var out: [String: Int] = [:]
        for line in text.components(separatedBy: "\n") {
            guard let j = value(line, "job"), let n = value(line, "next_time_epoch").flatMap({ Int($0) }) else { continue }
            out[j] = n % interval
        }
        return out
    }

    private func value(_ line: String, _ key: String) -> String? {
        guard let r = line.range(of: key + ": ") else { return nil }
        let rest = line[r.upperBound...]
        let end = rest.firstIndex { $0 == "," || $0 == "}" } ?? rest.endIndex
        return String(rest[..<end]).trimmingCharacters(in: CharacterSet(charactersIn: " '\""))
    }

    func makeImages(_ dir: String, jobs: [String], size: Int, seed: UInt64) -> [String: String] {
        var sha: [String: String] = [:]
        for (i, j) in jobs.enumerated() {
            let p = dir + "/\(j).img"
            E2E.write(p, E2E.randomBytes(size, seed: seed &+ UInt64(i)), at: 0)
            sha[j] = E2E.sha256(file: p)
        }
        return sha
    }

    // MARK: - tests

    /// Three schedulers, twelve jobs, 12 s slots for about 80 s: every slot
    /// of every job ran exactly once (one complete revision per cell of the
    /// job's grid, no two runs of a job overlapping, as many successful
    /// runs in the logs as revisions), every node ran some, and the view
    /// (status file, `check`, console) is the same on every node.
    func testThreeSchedulersRunEverySlotOnce() throws {
        let s = seed()
        let tag = String(UUID().uuidString.prefix(4).lowercased())
        let jobs = (1...12).map { String(format: "s\(tag)-%02d", $0) }
        let images = E2E.tempDir(self, "images")
        _ = makeImages(images, jobs: jobs, size: 2 << 20, seed: s)
        let interval = 12
        let nodes = ["a", "b", "c"].map { Node(self, name: "\(tag)\($0)", env: cluster.env) }
        let text = configText(jobs: jobs, images: images, lease: 6, interval: interval)
        for n in nodes { n.start(text) }
        // The grid of each job, before its first slot.
        var grid: [String: Int] = [:]
        XCTAssertTrue(E2E.wait(timeout: 10) {
            grid = offsets(nodes[0].status, interval: interval)
            return grid.count == jobs.count
        }, "offsets from \(nodes[0].status)")
        let started = Date()
        Thread.sleep(forTimeInterval: 80)
        let stopAt = Date()
        for n in nodes { XCTAssertEqual(n.stop(), 0, "\(n.name) stops cleanly") }

        var total = 0
        for j in jobs {
            let revs = completeRevisions(nodes[0].base + "/" + j)
            total += revs.count
            let off = Double(grid[j] ?? 0)
            var cells: [Int: Int] = [:]
            for r in revs { cells[Int(((r.time.timeIntervalSince1970 - off) / Double(interval)).rounded(.down)), default: 0] += 1 }
            // Exactly once per slot …
            for (cell, n) in cells where n != 1 { XCTFail("\(j): \(n) revisions in the slot starting \(Date(timeIntervalSince1970: Double(cell * interval) + off))") }
            // … and every slot from the first to the last one that had
            // 6 s to run before the stop.
            let first = Int(((started.timeIntervalSince1970 - off) / Double(interval)).rounded(.up))
            let last = Int(((stopAt.timeIntervalSince1970 - 6 - off) / Double(interval)).rounded(.down))
            for cell in first...max(first, last) where cells[cell] == nil {
                XCTFail("\(j): the slot starting \(Date(timeIntervalSince1970: Double(cell * interval) + off)) did not run")
            }
            // No two runs of a job overlap.
            for (x, y) in zip(revs, revs.dropFirst()) {
                XCTAssertLessThanOrEqual(x.time.timeIntervalSince1970 + x.duration, y.time.timeIntervalSince1970, "\(j): runs overlap")
            }
            // The logs: as many successful backups of the job, on all nodes together, as revisions.
            let ok = nodes.reduce(0) { $0 + $1.events("finished backup with return code 0").filter { $0.job == j }.count }
            XCTAssertEqual(ok, revs.count, "\(j): successful backups in the logs vs complete revisions")
            XCTAssertEqual(objects(j).filter { $0.hasPrefix("rev/") }.count, revs.count, "\(j): rev/ objects (incomplete ones left?)")
            XCTAssertEqual(leaseHolders(j), [], "\(j): no lease held after the schedulers stopped")
        }
        XCTAssertGreaterThanOrEqual(total, jobs.count * 5, "at least 5 slots per job ran")
        for n in nodes {
            let ran = n.events("took the job's lease").count
            print("\(n.name) ran \(ran) backups")
            XCTAssertGreaterThan(ran, 0, "\(n.name) ran some jobs")
        }
    }

    /// kill -9 of a scheduler while it runs two backups: the others run
    /// those jobs within lease + one interval, the dead node's leases are
    /// gone after their duration, its backups stopped without committing
    /// (their incomplete revisions removed by the next run), every
    /// revision restores bit-exact; restarted, the node takes work again.
    func testKilledSchedulerJobsRunElsewhere() throws {
        let s = seed()
        let tag = String(UUID().uuidString.prefix(4).lowercased())
        let jobs = (1...6).map { String(format: "k\(tag)-%02d", $0) }
        let images = E2E.tempDir(self, "images")
        let sha = makeImages(images, jobs: jobs, size: 64 << 20, seed: s)
        let interval = 20, lease = 6
        var env = cluster.env
        env["BACKY_THREADS"] = "1"
        let nodes = ["a", "b", "c"].map { Node(self, name: "\(tag)\($0)", env: env) }
        let text = configText(jobs: jobs, images: images, lease: lease, interval: interval, workerLimit: 4)
        for n in nodes { n.start(text) }
        // The first round (waits widen with TestSlack: sanitized backups of
        // 64 MiB are slow; the asserted failover bound does not).
        XCTAssertTrue(E2E.wait(timeout: TestSlack.scaled(Double(interval) + 40)) {
            jobs.allSatisfy { runRecord($0)?["ok"] as? Bool == true }
        }, "every job ran once")
        // Node a runs two jobs (asked on its console), and is killed while they run.
        let a = nodes[0]
        // Two jobs no node runs right now.
        var victims: [String] = []
        XCTAssertTrue(E2E.wait(timeout: TestSlack.scaled(Double(interval))) {
            victims = Array(jobs.filter { leaseHolders($0).isEmpty }.prefix(2))
            return victims.count == 2
        }, "two idle jobs")
        let before = a.events("took the job's lease").count
        for j in victims { XCTAssertTrue(a.console("run \(j)").contains("Triggered"), "run \(j) on \(a.name)") }
        XCTAssertTrue(E2E.wait(timeout: TestSlack.scaled(20.0)) { a.events("took the job's lease").count >= before + 2 }, "a took both leases:\n\(a.logText.suffix(2000))")
        XCTAssertTrue(victims.allSatisfy { leaseHolders($0) == [a.name] }, "a holds both leases: \(victims.map(leaseHolders))")
        let killed = Date()
        a.kill9()
        // Its leases lapse; the others run those jobs within lease + one interval.
        var failover: [String: Double] = [:]
        XCTAssertTrue(E2E.wait(timeout: Double(lease + interval) + 15) {
            for j in victims where failover[j] == nil {
                if let r = runRecord(j), r["ok"] as? Bool == true, let n = r["node"] as? String, n != a.name,
                   let f = r["finished"] as? Double, f > killed.timeIntervalSince1970 {
                    failover[j] = (r["started"] as? Double ?? f) - killed.timeIntervalSince1970
                }
            }
            return failover.count == victims.count
        }, "the jobs of the dead node ran elsewhere: \(failover)")
        print("failover (kill to the next run's start): \(failover.mapValues { String(format: "%.1f s", $0) })")
        for (j, t) in failover { XCTAssertLessThanOrEqual(t, Double(lease + interval) + 2, "\(j): ran elsewhere within lease + one interval") }
        // No lease of the dead node is left.
        for j in jobs { XCTAssertFalse(leaseHolders(j).contains(a.name), "\(j): \(a.name)'s lease is gone") }
        // Its backups stopped without committing anything.
        for j in victims {
            let log = (try? String(contentsOfFile: a.base + "/\(j)/backy.log", encoding: .utf8)) ?? ""
            XCTAssertTrue(log.contains("the scheduler that runs this backup is gone"), "\(j): a's orphaned backup stopped:\n\(log.suffix(1500))")
        }
        // Restarted, it takes work again.
        let restarted = Date()
        a.start(text)
        XCTAssertTrue(E2E.wait(timeout: TestSlack.scaled(Double(3 * interval))) { a.events("took the job's lease").count > before + 2 },
                      "the restarted node takes work again")
        print("restarted node's first lease after \(String(format: "%.1f", Date().timeIntervalSince(restarted))) s")
        for n in nodes { XCTAssertEqual(n.stop(), 0, "\(n.name) stops cleanly") }
        // Every revision restores bit-exact; nothing incomplete is left behind
        // once each job ran again; no lease is held.
        let out = E2E.tempDir(self, "restore")
        for j in jobs {
            let dir = nodes[1].base + "/" + j
            let revs = completeRevisions(dir)
            // The first round, and for the dead node's jobs the run elsewhere.
            XCTAssertGreaterThanOrEqual(revs.count, victims.contains(j) ? 2 : 1, "\(j): revisions")
            for r in (victims.contains(j) ? revs : Array(revs.suffix(1))) {
                let target = out + "/\(j)-\(r.id)"
                let res = E2E.backy(["-b", dir, "restore", "-r", r.id, target], env: cluster.env)
                XCTAssertEqual(res.code, 0, res.stderr)
                XCTAssertEqual(E2E.sha256(file: target), sha[j], "\(j) \(r.id) restores bit-exact")
                try? FileManager.default.removeItem(atPath: target)
            }
            XCTAssertEqual(leaseHolders(j), [], "\(j): no lease held")
        }
    }

    /// A scheduler that stalls (SIGSTOP) while its backup runs: the backup
    /// learns nothing more about the lease and, once a third of the lease
    /// may be left, commits nothing (neither map nor revision); the
    /// stalled node finds its lease lost when it resumes.
    func testStalledSchedulersBackupCommitsNothing() throws {
        let s = seed()
        let tag = String(UUID().uuidString.prefix(4).lowercased())
        let job = "t\(tag)-01"
        let images = E2E.tempDir(self, "images")
        _ = makeImages(images, jobs: [job], size: 64 << 20, seed: s)
        var env = cluster.env
        env["BACKY_THREADS"] = "1"
        let a = Node(self, name: "\(tag)a", env: env)
        a.start(configText(jobs: [job], images: images, lease: 12, interval: 3600))
        XCTAssertTrue(a.console("run \(job)").contains("Triggered"))
        XCTAssertTrue(E2E.wait(timeout: 20) { a.events("took the job's lease").count == 1 }, a.logText)
        // The backup child: the process whose arguments name the job and the lease pipe.
        var child: pid_t = 0
        XCTAssertTrue(E2E.wait(timeout: 10) {
            child = backupChild(of: job)
            return child > 0
        }, "the backup child runs")
        kill(a.pid, SIGSTOP)
        // Slow the child down (stopped 1.5 s of every 1.55 s: its own job
        // locks, 6 s, stay renewed) until it has given up or finished. At
        // 1/30 of its speed a backup of 64 MiB takes longer than the 8 s
        // after which less than a third of the lease is left, also on a
        // quiet machine (at 1.5 s of every 1.7 s it finished within them).
        let stalled = Date()
        // (A child that exited stays a zombie: its parent is stopped.)
        func alive() -> Bool {
            guard let st = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                  let close = st.lastIndex(of: ")") else { return false }
            return !st[st.index(after: close)...].hasPrefix(" Z")
        }
        while alive() && Date().timeIntervalSince(stalled) < 120 {
            kill(child, SIGSTOP)
            usleep(1_500_000)
            kill(child, SIGCONT)
            usleep(50_000)
        }
        kill(child, SIGCONT)
        XCTAssertTrue(E2E.wait(timeout: 30) { !alive() }, "the stalled node's backup ends")
        print("the stalled node's backup ended \(String(format: "%.1f", Date().timeIntervalSince(stalled))) s after the stall")
        let log = (try? String(contentsOfFile: a.base + "/\(job)/backy.log", encoding: .utf8)) ?? ""
        XCTAssertTrue(log.contains("the scheduler's lease on this job may lapse"),
                      "the backup refused to commit (if it finished within the lease, make it slower):\n\(log.suffix(2000))")
        XCTAssertEqual(completeRevisions(a.base + "/" + job).count, 0, "nothing committed")
        XCTAssertEqual(objects(job).filter { $0.hasPrefix("map/") }, [], "no map written")
        // Resumed after its lease (12 s) lapsed, the scheduler finds it lost.
        Thread.sleep(forTimeInterval: max(0, 13 - Date().timeIntervalSince(stalled)))
        kill(a.pid, SIGCONT)
        XCTAssertTrue(E2E.wait(timeout: 20) { a.logText.contains("\(job): lost the job's lease") }, "a finds its lease lost:\n\(a.logText.suffix(2000))")
        XCTAssertEqual(a.stop(), 0)
        XCTAssertEqual(leaseHolders(job), [])
    }

    /// The pid of the `backy … backup --lease-fd` process of job `job` (0 if none).
    func backupChild(of job: String) -> pid_t {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry),
                  let d = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let args = d.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if args.contains(where: { $0.hasSuffix("/" + job) }) && args.contains("--lease-fd") { return pid }
        }
        return 0
    }

    /// A mixed configuration on three nodes: a RADOS job any node runs, one
    /// limited to node a (`nodes:`), a directory job limited to node b and
    /// one every node runs in its own directory. Every node shows both RADOS
    /// jobs with the same last backup, failures and node; only b has (and
    /// shows) its directory job. `check` gives the same answer on every
    /// node; once c is killed, both others report it (WARNING) after 3
    /// leases; a node stopped with SIGTERM is not reported.
    func testOneViewOfMixedJobsAndSilentNode() throws {
        let s = seed()
        let tag = String(UUID().uuidString.prefix(4).lowercased())
        let (r1, r2, d1, d2) = ("v\(tag)-r1", "v\(tag)-r2", "v\(tag)-d1", "v\(tag)-d2")
        let images = E2E.tempDir(self, "images")
        _ = makeImages(images, jobs: [r1, r2, d1, d2], size: 1 << 20, seed: s)
        let nodes = ["a", "b", "c"].map { Node(self, name: "\(tag)\($0)", env: cluster.env) }
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        let pool = ClusterSchedulerTests.pool
        func job(_ name: String, _ extra: String) -> String {
            "  \(name):\n    schedule: fast\n\(extra)    source: {type: file, filename: \(images)/\(name).img}\n"
        }
        let text = globalSection(lease: 3, store: false) + """
            schedules:
              fast:
                slot: {interval: 8s, keep: 100}
            jobs:

            """ + job(r1, "    store: rados:\(pool)\n") + job(r2, "    store: rados:\(pool)\n    nodes: [\(a.name)]\n")
            + job(d1, "    nodes: [\(b.name)]\n") + job(d2, "")
        for n in nodes { n.start(text) }
        Thread.sleep(forTimeInterval: 26)
        // Who ran what.
        XCTAssertEqual(b.events("took the job's lease").filter { $0.job == r2 }.count + c.events("took the job's lease").filter { $0.job == r2 }.count, 0,
                       "only \(a.name) runs \(r2)")
        XCTAssertGreaterThanOrEqual(a.events("took the job's lease").filter { $0.job == r2 }.count, 2)
        XCTAssertEqual(runRecord(r2)?["node"] as? String, a.name)
        XCTAssertGreaterThanOrEqual(completeRevisions(b.base + "/" + d1).count, 2, "b backs up its directory job")
        XCTAssertFalse(FileManager.default.fileExists(atPath: a.base + "/" + d1), "a has no directory for b's job")
        for n in nodes { XCTAssertGreaterThanOrEqual(completeRevisions(n.base + "/" + d2).count, 2, "\(n.name) backs up \(d2) in its own directory") }
        // The status files: b's own directory job only on b; the RADOS jobs alike everywhere.
        func entries(_ n: Node) -> [String: [String]] {
            let text = (try? String(contentsOfFile: n.status, encoding: .utf8)) ?? ""
            var out: [String: [String]] = [:]
            for line in text.components(separatedBy: "\n") {
                guard let j = value(line, "job") else { continue }
                out[j] = ["last_time", "failures", "revisions", "sla", "node"].map { value(line, $0) ?? "-" }
            }
            return out
        }
        XCTAssertNil(entries(a)[d1])
        XCTAssertNotNil(entries(b)[d1])
        var views: [[String: [String]]] = []
        XCTAssertTrue(E2E.wait(timeout: 15) {
            views = nodes.map { e in entries(e).filter { $0.key == r1 || $0.key == r2 } }
            return views[0].count == 2 && views.allSatisfy { $0 == views[0] }
        }, "the RADOS jobs look the same in every status file: \(views)")
        XCTAssertEqual(views.first?[r2]?.last, a.name, "status names the node of \(r2)")
        XCTAssertTrue(c.console("jobs ^\(r2)$").contains(a.name), "the console's jobs shows the node:\n\(c.console("jobs"))")
        // check: the same on every node.
        func check(_ n: Node) -> (Int32, String) {
            let r = E2E.backy(["check", "-c", n.config, "--node", n.name], env: cluster.env)
            // Ages in seconds differ by the moment of asking.
            return (r.code, r.out.replacingOccurrences(of: #"[0-9]+"#, with: "N", options: .regularExpression))
        }
        let before = nodes.map(check)
        XCTAssertTrue(before.allSatisfy { $0.0 == 0 }, "check is OK: \(before)")
        // c dies; after 3 leases both others warn about it, alike.
        c.kill9()
        Thread.sleep(forTimeInterval: 11)
        let after = [a, b].map(check)
        for (code, out) in after {
            XCTAssertEqual(code, 1, out)
            XCTAssertTrue(out.contains("node \(c.name.replacingOccurrences(of: #"[0-9]+"#, with: "N", options: .regularExpression)) has not renewed anything"), out)
        }
        XCTAssertEqual(after[0].1.components(separatedBy: "\n").dropFirst(), after[1].1.components(separatedBy: "\n").dropFirst(), "the same lines on a and b")
        // A node stopped on purpose is not reported.
        c.start(text)
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(c.stop(), 0)
        Thread.sleep(forTimeInterval: 10)
        XCTAssertEqual(check(a).0, 0, "a stopped node is no warning: \(check(a).1)")
        for n in [a, b] { XCTAssertEqual(n.stop(), 0) }
    }
    /// Restore drills of a RADOS job run under its lease, once per drill
    /// interval across the nodes: the drill record lives in the store
    /// (`drill.json`), no job directory holds one, and every node's status
    /// file shows the same last drill.
    func testDrillsOfARadosJobRunOnceAcrossNodes() throws {
        try MountFixture.require(DrillTests.tools)
        let tag = String(UUID().uuidString.prefix(4).lowercased())
        let job = "dr\(tag)"
        let images = E2E.tempDir(self, "drill-images")
        let disk = MountFixture.bare(images, seed: MountFixture.seed &+ 41)
        let pool = ClusterSchedulerTests.pool
        // The job's revision before the schedulers start (its daily slot is
        // hours away): only drills run.
        let seedJob = images + "/seed-job"
        for args in [["init", "--store", "rados:\(pool)/\(job)", "file", disk.image], ["backup", "daily"]] {
            let r = E2E.backy(["-b", seedJob] + args, env: cluster.env)
            XCTAssertEqual(r.code, 0, r.stderr)
        }
        let drill = Int(TestSlack.scaled(6.0))
        let text = globalSection(lease: 3) + """
            schedules:
              slow:
                daily: {interval: 1d, keep: 2}
            jobs:
              \(job):
                schedule: slow
                drill: \(drill)s
                source: {type: file, filename: \(disk.image)}

            """
        let nodes = ["a", "b"].map { Node(self, name: "\(tag)\($0)", env: cluster.env) }
        for n in nodes { n.start(text) }
        let span = 8 * drill
        Thread.sleep(forTimeInterval: Double(span))
        let drills = nodes.map { $0.events("running restore drill").filter { $0.job == job }.count }
        let total = drills.reduce(0, +)
        print("\(name): drills per node \(drills) in \(span) s, interval \(drill) s")
        // One per interval across both (each node alone would drill about
        // span / interval times: twice that together).
        XCTAssertGreaterThanOrEqual(total, 2, "drills ran: \(drills)")
        XCTAssertLessThanOrEqual(total, span / drill + 2, "drills ran once per interval across the nodes: \(drills)")
        for n in nodes {
            XCTAssertEqual(n.events("finished restore drill with return code").filter { $0.job == job && !$0.line.hasSuffix("code 0") }.count, 0,
                           "clean drills on \(n.name)")
        }
        XCTAssertTrue(objects(job).contains("drill.json"), "the drill record is in the store")
        for n in nodes { XCTAssertFalse(FileManager.default.fileExists(atPath: n.base + "/\(job)/drill.json"), "no local drill record on \(n.name)") }
        // The same last drill in every status file.
        func lastDrill(_ n: Node) -> String? {
            let text = (try? String(contentsOfFile: n.status, encoding: .utf8)) ?? ""
            return text.components(separatedBy: "\n").first { value($0, "job") == job }.flatMap { value($0, "last_drill") }
        }
        var seen: [String?] = []
        XCTAssertTrue(E2E.wait(timeout: 20) {
            seen = nodes.map(lastDrill)
            return seen[0] != nil && seen[0] != "-" && seen.allSatisfy { $0 == seen[0] }
        }, "the same last drill on every node: \(seen)")
        for n in nodes { XCTAssertEqual(n.stop(), 0) }
        XCTAssertEqual(leaseHolders(job), [], "no lease left held")
    }
}
