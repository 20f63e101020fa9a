// RadosStoreTests: jobs whose history lives in Ceph RADOS (`init --store
// rados:POOL/NS`), against a real throwaway cluster: bit-exact round trips
// (sha256 against the source image), the objects `rados ls` shows, a job
// directory without chunks, verify/distrust/find/forget/purge, a second
// directory attached to the same namespace (and refused with another
// source), a killed backup whose locks lapse after their duration, and two
// directories backing up, restoring, forgetting and purging at once.
// Random images come from a seed printed by each test (BACKY_TEST_SEED
// replays one).
import Foundation
import XCTest

final class RadosStoreTests: XCTestCase {
    // nonisolated(unsafe): set by the class's setUp() before its first test runs, only read by the tests after it.
    nonisolated(unsafe) static var cluster: TestCephCluster?
    static let pool = "backy"
    static let mib = 1 << 20

    override class func setUp() {
        super.setUp()
        cluster = TestCephCluster.withPool(prefix: "backy-rados", pool: pool)
    }

    override class func tearDown() {
        cluster?.stop()
        cluster = nil
        super.tearDown()
    }

    var cluster: TestCephCluster { RadosStoreTests.cluster! }

    override func setUpWithError() throws {
        try TestCephCluster.require(RadosStoreTests.cluster)
    }

    // MARK: helpers

    func seed() -> UInt64 {
        let s = ProcessInfo.processInfo.environment["BACKY_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        print("\(name): seed \(s) (BACKY_TEST_SEED=\(s) replays it)")
        return s
    }

    @discardableResult
    func backy(_ args: [String], env: [String: String] = [:], expect code: Int32 = 0,
               file: StaticString = #filePath, line: UInt = #line) -> RunResult {
        var e = cluster.env
        for (k, v) in env { e[k] = v }
        let r = E2E.backy(args, env: e)
        XCTAssertEqual(r.code, code, "backy \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    /// A fresh namespace name.
    func namespace() -> String { "t-\(UUID().uuidString.prefix(8).lowercased())" }

    /// The object names of a namespace, sorted.
    func objects(_ ns: String) -> [String] {
        let r = cluster.tool("rados", ["-p", RadosStoreTests.pool, "-N", ns, "ls"])
        XCTAssertEqual(r.code, 0, r.stderr)
        return r.out.split(separator: "\n").map(String.init).sorted()
    }

    func chunkObjects(_ ns: String) -> Set<String> { Set(objects(ns).filter { $0.hasPrefix("chunk/") }) }

    func revisions(_ job: String, file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        E2E.revisions(job, env: cluster.env, file: file, line: line)
    }

    func revisionIDs(_ job: String) -> [String] { revisions(job).compactMap { $0["uuid"] as? String } }

    /// An image of `chunks` 4 MiB chunks: random, with a zero chunk at
    /// every fifth.
    func makeImage(_ path: String, chunks: Int, seed: UInt64) {
        E2E.truncate(path, UInt64(chunks * 4 * RadosStoreTests.mib))
        for i in 0..<chunks where i % 5 != 4 {
            E2E.write(path, E2E.randomBytes(4 * RadosStoreTests.mib, seed: seed &+ UInt64(i)), at: UInt64(i * 4 * RadosStoreTests.mib))
        }
    }

    /// A test's directory, seed (printed), image of `chunks` chunks
    /// (`makeImage`, at DIR/disk.img) and a fresh namespace.
    func fixture(_ tag: String, chunks: Int) -> (dir: String, seed: UInt64, img: String, ns: String) {
        let d = E2E.tempDir(self, tag)
        let s = seed()
        let img = d + "/disk.img"
        makeImage(img, chunks: chunks, seed: s)
        return (d, s, img, namespace())
    }

    /// `backy -b JOB init --store rados:POOL/NS file IMG`.
    func initRados(_ job: String, ns: String, img: String, file: StaticString = #filePath, line: UInt = #line) {
        backy(["-b", job, "init", "--store", "rados:\(RadosStoreTests.pool)/\(ns)", "file", img], file: file, line: line)
    }

    /// Restores `rev` of `job` and returns the sha256 of what came out.
    func restoredSHA(_ job: String, _ rev: String, dir: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        let out = dir + "/restore-\(UUID().uuidString.prefix(6))"
        backy(["-b", job, "restore", "-r", rev, out], file: file, line: line)
        defer { try? FileManager.default.removeItem(atPath: out) }
        return E2E.sha256(file: out)
    }

    /// Starts `backy -b JOB backup daily` with one worker thread (so it
    /// runs a while); its stderr goes to the returned pipe.
    func startBackup(_ job: String) throws -> (Process, Pipe) {
        let errPipe = Pipe()
        return (try startBacky(["-b", job, "backup", "daily"], stderr: errPipe), errPipe)
    }

    /// Starts `backy ARGS` against the test cluster, one worker thread (so
    /// a kill lands in the middle), stdout discarded, stderr to `stderr`
    /// (or discarded).
    func startBacky(_ args: [String], stderr: Pipe? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: E2E.binary)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in cluster.env { env[k] = v }
        env["BACKY_THREADS"] = "1"
        p.environment = env
        if let stderr { p.standardError = stderr } else { p.standardError = FileHandle.nullDevice }
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Sets `lock-duration` in a RADOS job's local config.
    func setLockDuration(_ job: String, _ seconds: Int) throws {
        let cfg = job + "/config"
        let text = try String(contentsOfFile: cfg, encoding: .utf8)
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        try FileManager.default.removeItem(atPath: cfg)
        try (String(line.dropLast()) + ", lock-duration: \(seconds)}\n").write(toFile: cfg, atomically: true, encoding: .utf8)
    }

    // MARK: tests

    /// Full and differential backups of a file source into RADOS restore
    /// bit-exact; the namespace holds exactly the chunk objects of the
    /// distinct non-zero chunks, the job directory none; status, find,
    /// verify (-r, --sample, distrusted), forget and purge work on it.
    func testFileSourceRoundTripsAndCommands() throws {
        let (d, s, img, ns) = fixture("rados-rt", chunks: 10)
        let sha1 = E2E.sha256(file: img)
        let job = d + "/job"
        initRados(job, ns: ns, img: img)
        XCTAssertEqual(try String(contentsOfFile: job + "/config", encoding: .utf8), "{store: rados:\(RadosStoreTests.pool)/\(ns)}\n")
        backy(["-b", job, "backup", "daily"])
        // 10 chunks, 2 of them zero: 8 chunk objects.
        XCTAssertEqual(chunkObjects(ns).count, 8)
        let first = objects(ns)
        XCTAssertTrue(first.contains("backy.store") && first.contains("config"), "\(first)")
        XCTAssertEqual(first.filter { $0.hasPrefix("rev/") }.count, 1)
        XCTAssertEqual(first.filter { $0.hasPrefix("map/") }.count, 1)
        XCTAssertEqual(first.filter { $0.hasPrefix("session/") }, [], "sessions are gone after the backup")
        // The local directory: the config and the log, nothing else.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job).sorted(), ["backy.log", "config"])

        // 5 % of the image changes: one chunk of ten rewritten, half of another.
        E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ 100), at: 0)
        E2E.write(img, E2E.randomBytes(2 * RadosStoreTests.mib, seed: s &+ 101), at: UInt64(12 * RadosStoreTests.mib))
        let sha2 = E2E.sha256(file: img)
        let b2 = backy(["-b", job, "backup", "hourly"])
        XCTAssertTrue(b2.stderr.contains("2 written"), b2.stderr)
        XCTAssertEqual(chunkObjects(ns).count, 10)
        let ids = revisionIDs(job)
        XCTAssertEqual(ids.count, 2)
        guard ids.count == 2 else { return }
        XCTAssertEqual(restoredSHA(job, ids[0], dir: d), sha1)
        XCTAssertEqual(restoredSHA(job, ids[1], dir: d), sha2)
        // Restore to stdout.
        let piped = backy(["-b", job, "restore", "-r", ids[0], "-"])
        XCTAssertEqual(E2E.sha256(piped.stdout), sha1)

        // find names the revision's map object.
        let f = backy(["-b", job, "find", "-r", ids[1]])
        XCTAssertEqual(f.out, "rados:\(RadosStoreTests.pool)/\(ns)/map/\(ids[1])\n")
        // verify: distrust, then verify reads every chunk back.
        backy(["-b", job, "distrust", "-r", ids[0]])
        XCTAssertEqual(revisions(job).first?["trust"] as? String, "distrusted")
        let v = backy(["-b", job, "verify"])
        XCTAssertTrue(v.stderr.contains("8 chunks read back"), v.stderr)
        XCTAssertEqual(revisions(job).first?["trust"] as? String, "verified")
        XCTAssertTrue(objects(ns).contains("verified"))
        let sample = backy(["-b", job, "verify", "--sample", "100"])
        XCTAssertTrue(sample.stderr.contains("Sampled 10 chunks"), sample.stderr)

        // A damaged chunk object (the image's second chunk, in every
        // revision) is found and quarantined (copied aside, then removed).
        let victim = "chunk/" + E2E.sha256(Data(E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ 1)))
        XCTAssertTrue(chunkObjects(ns).contains(victim))
        let tmp = d + "/chunk"
        XCTAssertEqual(cluster.tool("rados", ["-p", RadosStoreTests.pool, "-N", ns, "get", victim, tmp]).code, 0)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: tmp))
        bytes[bytes.count - 1] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: tmp))
        XCTAssertEqual(cluster.tool("rados", ["-p", RadosStoreTests.pool, "-N", ns, "put", victim, tmp]).code, 0)
        let bad = backy(["-b", job, "verify", "--sample", "100"], expect: 1)
        XCTAssertTrue(bad.stderr.contains("1 bad"), bad.stderr)
        let after = objects(ns)
        XCTAssertFalse(after.contains(victim))
        let hex = String(victim.dropFirst("chunk/".count))
        XCTAssertEqual(after.filter { $0.hasPrefix("quarantine/\(hex).") }.count, 2, "\(after)")
        // The next backup (of the unchanged image) writes a good copy back.
        let sha3 = E2E.sha256(file: img)
        XCTAssertEqual(sha3, sha2)
        backy(["-b", job, "backup", "daily"])
        XCTAssertTrue(objects(ns).contains(victim))
        let ids3 = revisionIDs(job)
        XCTAssertEqual(ids3.count, 3)
        guard ids3.count == 3 else { return }
        XCTAssertEqual(restoredSHA(job, ids3[2], dir: d), sha3)

        // forget the first two, purge: exactly the chunks only they used go.
        backy(["-b", job, "forget", "-r", ids[0]])
        backy(["-b", job, "forget", "-r", ids[1]])
        let p = backy(["-b", job, "purge"])
        XCTAssertTrue(p.out.contains("Purging: 2 chunks") && p.stderr.hasPrefix("Freed 8.00 MiB;"), p.out + p.stderr)
        XCTAssertEqual(chunkObjects(ns).count, 8)
        XCTAssertEqual(restoredSHA(job, ids3[2], dir: d), sha3)
        XCTAssertEqual(objects(ns).filter { $0.hasPrefix("rev/") || $0.hasPrefix("map/") }.count, 2)
    }

    /// A second directory attaches to the namespace's job and sees the same
    /// revisions; another source is refused (one error line, exit 1, no
    /// directory made) unless --force; a namespace without a job is named.
    func testAttachSecondDirectory() throws {
        let (d, s, img, ns) = fixture("rados-attach", chunks: 3)
        let store = "rados:\(RadosStoreTests.pool)/\(ns)"
        backy(["-b", d + "/a", "init", "--store", store, "file", img])
        backy(["-b", d + "/a", "backup", "daily"])
        let b = backy(["-b", d + "/b", "init", "--store", store, "file", img])
        XCTAssertTrue(b.stderr.contains("Attached job"), b.stderr)
        XCTAssertEqual(revisionIDs(d + "/b"), revisionIDs(d + "/a"))
        XCTAssertEqual(revisionIDs(d + "/a").count, 1)
        backy(["-b", d + "/b", "backup", "hourly"])
        XCTAssertEqual(revisionIDs(d + "/a").count, 2)

        let other = d + "/other.img"
        makeImage(other, chunks: 1, seed: s &+ 7)
        let refused = backy(["-b", d + "/c", "init", "--store", store, "file", other], expect: 1)
        XCTAssertEqual(refused.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: ") }.count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("already holds a job with another source"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/c"))
        // --force attaches and makes it the job's source.
        backy(["-b", d + "/c", "init", "--force", "--store", store, "file", other])
        backy(["-b", d + "/a", "backup", "daily"])
        let ids = revisionIDs(d + "/a")
        XCTAssertEqual(ids.count, 3)
        if let last = ids.last { XCTAssertEqual(restoredSHA(d + "/a", last, dir: d), E2E.sha256(file: other)) }
        // The namespace's name defaults to the directory's base name.
        let byName = d + "/" + namespace()
        backy(["-b", byName, "init", "--store", "rados:\(RadosStoreTests.pool)", "file", img])
        XCTAssertEqual(objects((byName as NSString).lastPathComponent), ["backy.store", "config"])
        // A local config naming a namespace that holds no job.
        let empty = d + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try "{store: rados:\(RadosStoreTests.pool)/nothing-here}\n".write(toFile: empty + "/config", atomically: true, encoding: .utf8)
        let e = backy(["-b", empty, "status"], expect: 1)
        XCTAssertTrue(e.stderr.contains("holds no backy job"), e.stderr)
        // A missing pool.
        let nopool = backy(["-b", d + "/x", "init", "--store", "rados:no-such-pool/x", "file", img], expect: 1)
        XCTAssertTrue(nopool.stderr.contains("Ceph pool 'no-such-pool' does not exist"), nopool.stderr)
    }

    /// A backup killed with SIGKILL leaves its locks held; another directory
    /// attached to the job is refused until the lock's duration ends, then
    /// backs up; purge calls the dead session dead, and every finished
    /// revision restores bit-exact.
    func testKilledBackupReleasesItsLocksAfterTheirDuration() throws {
        let (d, s, img, ns) = fixture("rados-kill", chunks: 40)
        let sha = E2E.sha256(file: img)
        let store = "rados:\(RadosStoreTests.pool)/\(ns)"
        let a = d + "/a", b = d + "/b"
        backy(["-b", a, "init", "--store", store, "file", img])
        backy(["-b", b, "init", "--store", store, "file", img])
        let duration = 4
        try setLockDuration(a, duration)
        try setLockDuration(b, duration)
        backy(["-b", a, "backup", "daily"])

        // Back up again from a (new chunks: the image changed) and kill it
        // while its session is open.
        makeImage(img, chunks: 40, seed: s &+ 1000)
        let (p, _) = try startBackup(a)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && !objects(ns).contains(where: { $0.hasPrefix("session/") }) { usleep(20_000) }
        XCTAssertTrue(p.isRunning, "the backup finished before it could be killed")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let killedAt = Date()

        // b is refused while a's lock is held…
        let refused = backy(["-b", b, "backup", "daily"], expect: 1)
        XCTAssertTrue(refused.stderr.contains("another backup"), refused.stderr)
        // …and backs up once its duration has ended.
        var ok = false
        while Date().timeIntervalSince(killedAt) < Double(duration) * 3 {
            let r = E2E.backy(["-b", b, "backup", "daily"], env: cluster.env)
            if r.code == 0 { ok = true; break }
            XCTAssertTrue(r.stderr.contains("another backup"), r.stderr)
            usleep(200_000)
        }
        XCTAssertTrue(ok, "the lock did not lapse within 3 durations")
        let waited = Date().timeIntervalSince(killedAt)
        print("\(name): the killed backup's lock lapsed after \(String(format: "%.1f", waited)) s (duration \(duration) s)")
        XCTAssertGreaterThan(waited, Double(duration) - 1.5)
        // The killed run's revision was incomplete and is gone; its session
        // was cleaned (by b's backup or this purge).
        let purge = backy(["-b", a, "purge"])
        XCTAssertTrue(purge.out.hasPrefix("Purging: ") && purge.stderr.hasPrefix("Freed "), purge.out + purge.stderr)
        XCTAssertEqual(objects(ns).filter { $0.hasPrefix("session/") }, [])
        let ids = revisionIDs(a)
        XCTAssertEqual(ids.count, 2)
        guard ids.count == 2 else { return }
        XCTAssertEqual(restoredSHA(a, ids[0], dir: d), sha)
        XCTAssertEqual(restoredSHA(b, ids[1], dir: d), E2E.sha256(file: img))
        let info = cluster.tool("rados", ["-p", RadosStoreTests.pool, "-N", ns, "lock", "info", "lock/backup", "backy"])
        XCTAssertFalse(info.out.contains("\"cookie\""), "lock/backup is still held: \(info.out)")
    }

    /// Two directories attached to one namespace: one backs up, forgets and
    /// purges in a loop while the other backs up and restores; afterwards
    /// every revision restores bit-exact and no chunk is missing.
    func testTwoDirectoriesBackupAndPurgeAtOnce() throws {
        let d = E2E.tempDir(self, "rados-two")
        let s = seed()
        let ns = namespace()
        let store = "rados:\(RadosStoreTests.pool)/\(ns)"
        let imgA = d + "/a.img"
        makeImage(imgA, chunks: 6, seed: s)
        let a = d + "/a", b = d + "/b"
        backy(["-b", a, "init", "--store", store, "file", imgA])
        backy(["-b", b, "init", "--force", "--store", store, "file", imgA])
        let rounds = 6
        /// What both loops record (behind a lock).
        // @unchecked Sendable: every `var` is read and changed only under `lock`.
        final class Record: @unchecked Sendable {
            let lock = NSLock()
            var shas: [String: String] = [:]
            var failures: [String] = []
            var bBackups = 0, bRestores = 0, sourceChanged = 0
            func with(_ body: (Record) -> Void) { lock.lock(); body(self); lock.unlock() }
        }
        let rec = Record()
        let env = cluster.env
        /// Complete revisions only: the other directory's backup may have
        /// just begun one (it is listed, incomplete, as the newest).
        @Sendable func ids(_ job: String) -> [String] {
            let st = E2E.backy(["-b", job, "status", "--json"], env: env)
            let o = (try? JSONSerialization.jsonObject(with: st.stdout) as? [String: Any]) ?? [:]
            return ((o["revisions"] as? [[String: Any]]) ?? []).filter { ($0["complete"] as? Bool) == true }.compactMap { $0["uuid"] as? String }
        }
        let group = DispatchGroup()
        // a: change the image, back up, forget the oldest, purge.
        DispatchQueue.global().async(group: group) {
            for i in 0..<rounds {
                E2E.write(imgA, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ UInt64(1000 + i)), at: UInt64((i % 6) * 4 * RadosStoreTests.mib))
                let sha = E2E.sha256(file: imgA)
                let r = E2E.backy(["-b", a, "backup", "a\(i)"], env: env)
                let now = ids(a)
                rec.with { x in
                    if r.code == 0, let id = now.last { x.shas[id] = sha }
                    if r.code != 0 && !r.stderr.contains("another backup") { x.failures.append("a backup: \(r.stderr)") }
                }
                if now.count > 3 { _ = E2E.backy(["-b", a, "forget", "-r", now[0]], env: env) }
                let p = E2E.backy(["-b", a, "purge"], env: env)
                if p.code != 0 { rec.with { $0.failures.append("purge: \(p.stderr)") } }
            }
        }
        // b: back up (the source may change under it: then its verification
        // says so and removes the revision) and restore its newest revision.
        DispatchQueue.global().async(group: group) {
            for _ in 0..<rounds {
                let sha = E2E.sha256(file: imgA)
                let r = E2E.backy(["-b", b, "backup", "b"], env: env)
                if r.code == 0, let id = ids(b).last {
                    let out = d + "/b-restore"
                    let rr = E2E.backy(["-b", b, "restore", "-f", "-r", id, out], env: env)
                    let got = E2E.sha256(file: out)
                    rec.with { x in
                        x.bBackups += 1
                        // a may have forgotten it meanwhile: a clean refusal.
                        if rr.code == 0 {
                            x.bRestores += 1
                            if x.shas[id] == nil && got == sha { x.shas[id] = sha }
                        } else if !rr.stderr.contains("nknown revision") && !rr.stderr.contains("no map") {
                            x.failures.append("b restore of \(id): \(rr.stderr)")
                        }
                    }
                } else if r.code != 0 {
                    rec.with { x in
                        if r.stderr.contains("does not match source") {
                            x.sourceChanged += 1
                        } else if !r.stderr.contains("another backup") {
                            x.failures.append("b backup: \(r.stderr)")
                        }
                    }
                }
            }
        }
        group.wait()
        XCTAssertEqual(rec.failures, [])
        print("\(name): b backed up \(rec.bBackups) times (restored \(rec.bRestores)), \(rec.sourceChanged) backups saw the source change")
        // Every revision left restores; those with a known image, bit-exact.
        let left = revisionIDs(a)
        XCTAssertGreaterThan(left.count, 0)
        for id in left {
            let got = restoredSHA(a, id, dir: d)
            if let want = rec.shas[id] { XCTAssertEqual(got, want, "revision \(id)") }
        }
        let v = backy(["-b", a, "verify", "--sample", "100"])
        XCTAssertTrue(v.stderr.contains(" 0 bad"), v.stderr)
    }

    /// Purge runs again and again beside a backup that writes new chunks
    /// (known to purge only through the backup's pins until its map is
    /// written): the backup's revision restores bit-exact, and purge
    /// removed nothing it relied on.
    func testPurgeBesideARunningBackupKeepsItsChunks() throws {
        let (d, s, img, ns) = fixture("rados-pin", chunks: 30)
        let store = "rados:\(RadosStoreTests.pool)/\(ns)"
        let a = d + "/a", b = d + "/b"
        backy(["-b", a, "init", "--store", store, "file", img])
        backy(["-b", b, "init", "--store", store, "file", img])
        let (p, errPipe) = try startBackup(b)
        var purges = 0, removedWhileRunning = 0
        while p.isRunning {
            let r = E2E.backy(["-b", a, "purge"], env: cluster.env)
            XCTAssertEqual(r.code, 0, r.stderr)
            // "Purging: N chunks" on stdout (a purge that says nothing fails).
            guard let m = r.out.range(of: #"Purging: (\d+) chunks"#, options: .regularExpression),
                  let n = Int(r.out[m].split(separator: " ")[1]) else {
                XCTFail("purge said: \(r.out) \(r.stderr)")
                break
            }
            removedWhileRunning += n
            purges += 1
        }
        p.waitUntilExit()
        let log = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, log)
        print("\(name): \(purges) purges beside the backup removed \(removedWhileRunning) chunks")
        XCTAssertGreaterThan(purges, 2, "the backup ended before purge could run beside it")
        XCTAssertEqual(removedWhileRunning, 0)
        let ids = revisionIDs(a)
        XCTAssertEqual(ids.count, 1)
        if let id = ids.first { XCTAssertEqual(restoredSHA(a, id, dir: d), E2E.sha256(file: img)) }
        XCTAssertEqual(chunkObjects(ns).count, 24)
    }

    /// The ceph-rbd source into a RADOS store: a full and a differential
    /// backup restore bit-exact against `rbd export` of the image as it was
    /// backed up.
    func testCephRBDSourceIntoRadosStore() throws {
        let d = E2E.tempDir(self, "rados-rbd")
        let s = seed()
        let helper = d + "/rbd-helper.py"
        try CephTests.helperSource.write(toFile: helper, atomically: true, encoding: .utf8)
        let image = "img-\(UUID().uuidString.prefix(8).lowercased())"
        func ops(_ o: String...) {
            let r = E2E.run("/usr/bin/python3", [helper, image] + o, env: cluster.env, timeout: 120)
            XCTAssertEqual(r.code, 0, "helper \(o): \(r.stderr)")
        }
        let mib = RadosStoreTests.mib
        ops("create:\(24 * mib)", "write:0:\(8 * mib):\(s)", "write:\(16 * mib):\(4 * mib):\(s &+ 1)")
        defer { ops("remove") }
        func exported() -> String {
            let out = d + "/export-\(UUID().uuidString.prefix(6))"
            let r = cluster.tool("rbd", ["export", "rbd/" + image, out])
            XCTAssertEqual(r.code, 0, r.stderr)
            defer { try? FileManager.default.removeItem(atPath: out) }
            return E2E.sha256(file: out)
        }
        let ns = namespace()
        let job = d + "/job"
        backy(["-b", job, "init", "--store", "rados:\(RadosStoreTests.pool)/\(ns)", "ceph-rbd", "rbd/" + image])
        let full = backy(["-b", job, "backup", "daily"])
        XCTAssertTrue(full.stderr.contains("full backup"), full.stderr)
        let sha1 = exported()
        ops("write:\(5 * mib):\(mib):\(s &+ 2)")
        let diff = backy(["-b", job, "backup", "daily"])
        XCTAssertTrue(diff.stderr.contains("differential backup"), diff.stderr)
        let sha2 = exported()
        let ids = revisionIDs(job)
        XCTAssertEqual(ids.count, 2)
        guard ids.count == 2 else { return }
        XCTAssertEqual(restoredSHA(job, ids[0], dir: d), sha1)
        XCTAssertEqual(restoredSHA(job, ids[1], dir: d), sha2)
        // 3 distinct non-zero chunks first, one rewritten chunk after.
        XCTAssertEqual(chunkObjects(ns).count, 4)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job).sorted(), ["backy.log", "config"])
    }

    /// The scheduler runs a job with `store:` (per job here; `global.store`
    /// parses the same way) beside a directory job: both get scheduled
    /// backups, expiry and purge; the RADOS job's directory holds no chunk;
    /// `check` is OK.
    func testSchedulerRunsRadosJobBesideDirectoryJob() throws {
        let s = SchedulerHarness(self, schedules: "  quick:\n    short: {interval: 2s, keep: 2}")
        s.env = cluster.env
        s.addJob("plain", schedule: "quick")
        s.addJob("inrados", schedule: "quick")
        let ns = namespace()
        let last = s.jobsYAML.removeLast()
        s.jobsYAML.append(last.replacingOccurrences(of: "    schedule: quick", with: "    schedule: quick\n    store: rados:\(RadosStoreTests.pool)/\(ns)"))
        s.start()
        XCTAssertTrue(s.wait(timeout: 60) { s.createdRevisions("plain") >= 4 && s.createdRevisions("inrados") >= 4 },
                      "scheduled backups happen; log:\n\(s.logText)")
        XCTAssertTrue(s.wait(timeout: 30) { self.revisionIDs(s.base + "/inrados").count < s.createdRevisions("inrados") },
                      "revisions of the RADOS job expire")
        XCTAssertTrue(s.logText.contains("inrados: Removing revision "), s.logText)
        XCTAssertEqual(try String(contentsOfFile: s.base + "/inrados/config", encoding: .utf8), "{store: rados:\(RadosStoreTests.pool)/\(ns)}\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: s.base + "/inrados").sorted(), ["backy.log", "config"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: s.base + "/plain/chunks"))
        let o = objects(ns)
        XCTAssertTrue(o.contains("config") && o.contains { $0.hasPrefix("chunk/") }, "\(o)")
        // Every revision left restores bit-exact (the image never changed).
        let img = s.dir + "/images/inrados.img"
        for id in revisionIDs(s.base + "/inrados") {
            XCTAssertEqual(restoredSHA(s.base + "/inrados", id, dir: s.dir), E2E.sha256(file: img))
        }
        var check = E2E.backy(["check", "-c", s.config], env: cluster.env)
        s.wait(timeout: 30) {
            check = E2E.backy(["check", "-c", s.config], env: self.cluster.env)
            return check.code == 0
        }
        XCTAssertEqual(check.code, 0, check.out)
        XCTAssertEqual(s.stop(), 0)
    }

    /// A backup killed (SIGKILL, BACKY_CRASH_AT) at each step of its writes:
    /// the killed revision never shows as complete, the next backup (after
    /// the killed one's locks lapsed) succeeds, and every finished revision
    /// restores bit-exact; a purge afterwards keeps them whole.
    func testBackupKilledAtEachStepOfItsWrites() throws {
        let (d, s, img, ns) = fixture("rados-crash", chunks: 6)
        let job = d + "/job"
        initRados(job, ns: ns, img: img)
        try setLockDuration(job, 2)
        backy(["-b", job, "backup", "daily"])
        var want: [String: String] = [:]
        want[revisionIDs(job)[0]] = E2E.sha256(file: img)
        for (i, point) in ["chunk-renamed", "map-before-rename", "map-written", "rev-before-complete", "rev-complete"].enumerated() {
            E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ UInt64(50 + i)), at: UInt64(i * 4 * RadosStoreTests.mib))
            let sha = E2E.sha256(file: img)
            let r = E2E.backy(["-b", job, "backup", "daily"], env: cluster.env.merging(["BACKY_CRASH_AT": point]) { $1 })
            XCTAssertEqual(r.signal, SIGKILL, "\(point): the backup killed itself (exit \(r.code)): \(r.stderr)")
            let revs = revisions(job)
            if point == "rev-complete", let last = revs.last, (last["complete"] as? Bool) == true, let id = last["uuid"] as? String {
                want[id] = sha  // killed after its revision was complete: it stays
            } else {
                XCTAssertEqual(revs.filter { ($0["complete"] as? Bool) == true }.count, want.count, "\(point)")
            }
            // The next backup waits out the killed one's lock, then works.
            var ok = false
            for _ in 0..<50 {
                let n = E2E.backy(["-b", job, "backup", "daily"], env: cluster.env)
                if n.code == 0 { ok = true; break }
                XCTAssertTrue(n.stderr.contains("another backup"), n.stderr)
                usleep(200_000)
            }
            XCTAssertTrue(ok, "\(point): no backup after the kill")
            if let id = revisionIDs(job).last { want[id] = sha }
        }
        backy(["-b", job, "purge"])
        let ids = revisionIDs(job)
        XCTAssertEqual(Set(ids), Set(want.keys))
        for id in ids { XCTAssertEqual(restoredSHA(job, id, dir: d), want[id], id) }
        XCTAssertEqual(objects(ns).filter { $0.hasPrefix("session/") }, [])
    }

    /// A map object whose revision is gone (a late write of a run that lost
    /// its lease after the next holder removed its revision, or a killed
    /// copy) keeps its chunks only until the next backup removes it; then
    /// purge drops them.
    func testMapObjectWithoutRevisionIsRemovedByTheNextBackup() throws {
        let (d, s, img, ns) = fixture("rados-orphan", chunks: 5)
        let job = d + "/job"
        initRados(job, ns: ns, img: img)
        backy(["-b", job, "backup", "daily"])
        let sha1 = E2E.sha256(file: img)
        E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ 1000), at: 0)
        backy(["-b", job, "backup", "daily"])
        let ids = revisionIDs(job)
        XCTAssertEqual(ids.count, 2)
        let orphan = Trust.newID(Int(s % 100_000) + 17)
        let saved = d + "/map"
        for args in [["get", "map/\(ids[1])", saved], ["put", "map/\(orphan)", saved]] {
            let r = cluster.tool("rados", ["-p", RadosStoreTests.pool, "-N", ns] + args)
            XCTAssertEqual(r.code, 0, r.stderr)
        }
        backy(["-b", job, "forget", "-r", ids[1]])
        backy(["-b", job, "purge"])
        // Chunks 0-3 of the first image (chunk 4 is zero) and the second
        // revision's chunk 0, which the orphan map still names.
        XCTAssertEqual(chunkObjects(ns).count, 5)
        E2E.write(img, E2E.randomBytes(4 * RadosStoreTests.mib, seed: s &+ 2000), at: 0)
        backy(["-b", job, "backup", "daily"])
        XCTAssertFalse(objects(ns).contains("map/\(orphan)"), "the orphan map is gone")
        let log = try String(contentsOfFile: job + "/backy.log", encoding: .utf8)
        XCTAssertTrue(log.contains("Removing rados:\(RadosStoreTests.pool)/\(ns)/map/\(orphan): its revision is gone"), log)
        backy(["-b", job, "purge"])
        XCTAssertEqual(chunkObjects(ns).count, 5, "the orphan's chunk went, the new one came")
        let now = revisionIDs(job)
        XCTAssertEqual(now.count, 2)
        XCTAssertEqual(objects(ns).filter { $0.hasPrefix("map/") }.sorted(), now.map { "map/\($0)" }.sorted())
        XCTAssertEqual(restoredSHA(job, ids[0], dir: d), sha1)
        XCTAssertEqual(restoredSHA(job, now[1], dir: d), E2E.sha256(file: img))
    }

    /// The NBD server serves a RADOS job's revisions bit-exact, and its
    /// session's pinned map is gone once the client is done.
    func testNBDServerServesRadosJob() throws {
        let (d, s, img, ns) = fixture("rados-nbd", chunks: 5)
        let job = d + "/job"
        initRados(job, ns: ns, img: img)
        backy(["-b", job, "backup", "daily"])
        let port = E2E.freePort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: E2E.binary)
        p.arguments = ["-b", job, "nbd-server", "-p", String(port)]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in cluster.env { env[k] = v }
        p.environment = env
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        var listed = RunResult(code: -1, stdout: Data(), stderr: "")
        for _ in 0..<100 {
            listed = E2E.run("/usr/bin/nbdinfo", ["--list", "nbd://127.0.0.1:\(port)"])
            if listed.code == 0 { break }
            usleep(100_000)
        }
        XCTAssertEqual(listed.code, 0, listed.stderr)
        let out = d + "/nbd.img"
        let c = E2E.run("/usr/bin/nbdcopy", ["nbd://127.0.0.1:\(port)/latest", out])
        XCTAssertEqual(c.code, 0, c.stderr)
        XCTAssertEqual(E2E.sha256(file: out), E2E.sha256(file: img))
    }
}
