// NBDTests: `backy nbd-server` with real NBD clients: nbdinfo (list, info,
// map), nbdcopy, qemu-img, four clients at once, single-file restore from
// an ext4 image through nbdfuse + debugfs, Python libnbd for writable
// overlays and damaged chunks, purge during a session, and SIGTERM.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A running `backy nbd-server` child process.
final class NBDServerProcess {
    let process = Process()
    let port: Int
    let logPath: String
    var url: String { "nbd://127.0.0.1:\(port)" }

    init(job: String, extra: [String] = [], test: XCTestCase) throws {
        port = E2E.freePort()
        logPath = job + "/../nbd-server-\(port).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: E2E.binary)
        process.arguments = ["-b", job, "nbd-server", "-p", String(port)] + extra
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !NBDServerProcess.canConnect(port) {
            guard process.isRunning, Date() < deadline else {
                throw E2E.Unavailable(description: "nbd-server did not start: \(log)")
            }
            usleep(20_000)
        }
        test.addTeardownBlock { [self] in
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM; returns the exit status.
    func stop(timeout: Double = 20) -> Int32? {
        process.terminate()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { return nil }
        return process.terminationStatus
    }

    static func canConnect(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

final class NBDTests: XCTestCase {
    static let mib = 1 << 20
    static let chunk = 4 << 20

    /// A job with two revisions of a 48 MiB + 12 KiB image that has zero chunks.
    struct Fixture {
        var dir: String
        var job: String
        var revs: [String]          // oldest first
        var images: [String]        // the image file of each revision
        var zeroChunks: [[Int]]     // per revision
        var size: UInt64
    }

    func makeFixture() throws -> Fixture {
        let dir = E2E.tempDir(self, "nbd")
        let img = dir + "/disk.img"
        let size: UInt64 = 48 * UInt64(Self.mib) + 12 * 1024
        E2E.truncate(img, size)
        // Data in chunks 0, 3, 4, 6 and the short last chunk; 1, 2, 5, 7..11 stay zero.
        for c in [0, 3, 4, 6] {
            E2E.write(img, E2E.randomBytes(3 * Self.mib + 777, seed: UInt64(c + 1)), at: UInt64(c * Self.chunk + 4096))
        }
        E2E.write(img, E2E.randomBytes(8192, seed: 99), at: size - 8192)
        let job = dir + "/job"
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", img]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        let copy1 = dir + "/rev1.img"
        XCTAssertEqual(E2E.run("/bin/cp", ["--sparse=always", img, copy1]).code, 0)
        // Second revision: chunk 3 zeroed, chunk 9 gets data.
        E2E.write(img, [UInt8](repeating: 0, count: Self.chunk), at: UInt64(3 * Self.chunk))
        E2E.write(img, E2E.randomBytes(Self.mib, seed: 7), at: UInt64(9 * Self.chunk + 100))
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "weekly,monthly"]).code, 0)
        let revs = E2E.revisionIDs(job)
        XCTAssertEqual(revs.count, 2)
        return Fixture(dir: dir, job: job, revs: revs, images: [copy1, img],
                       zeroChunks: [[1, 2, 5, 7, 8, 9, 10, 11], [1, 2, 3, 5, 7, 8, 10, 11]], size: size)
    }

    func python(_ script: String, _ args: [String] = []) throws -> RunResult {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
              E2E.run("/usr/bin/python3", ["-c", "import nbd"]).code == 0 else {
            throw E2E.unavailable("python3-libnbd is not installed (scripts/install-deps)")
        }
        return E2E.run("/usr/bin/python3", ["-c", script] + args, timeout: 120)
    }

    // MARK: tests

    func testListInfoAndMap() throws {
        let nbdinfo = try E2E.tool("nbdinfo")
        let f = try makeFixture()
        let s = try NBDServerProcess(job: f.job, test: self)
        let list = E2E.run(nbdinfo, ["--list", s.url])
        XCTAssertEqual(list.code, 0, list.stderr)
        for r in f.revs { XCTAssertTrue(list.out.contains("export=\"\(r)\""), list.out) }
        XCTAssertTrue(list.out.contains("tags: daily, trust: trusted"), list.out)
        XCTAssertTrue(list.out.contains("tags: monthly,weekly"), list.out)

        for (k, r) in f.revs.enumerated() {
            let info = E2E.run(nbdinfo, ["--json", s.url + "/" + r])
            XCTAssertEqual(info.code, 0, info.stderr)
            let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: info.stdout) as? [String: Any])
            let ex = try XCTUnwrap((j["exports"] as? [[String: Any]])?.first)
            XCTAssertEqual((ex["export-size"] as? NSNumber)?.uint64Value, f.size)
            XCTAssertEqual(ex["is_read_only"] as? Bool, true)
            XCTAssertEqual(ex["can_multi_conn"] as? Bool, true)
            XCTAssertEqual((ex["block_size_minimum"] as? NSNumber)?.intValue, 512)
            XCTAssertEqual((ex["block_size_preferred"] as? NSNumber)?.intValue, 4096)
            XCTAssertEqual((ex["block_size_maximum"] as? NSNumber)?.intValue, 32 << 20)

            // The map: holes exactly where the image had zero chunks.
            let map = E2E.run(nbdinfo, ["--map", s.url + "/" + r])
            XCTAssertEqual(map.code, 0, map.stderr)
            var holes: [Int] = []
            var covered: UInt64 = 0
            for line in map.out.split(separator: "\n") {
                let p = line.split(separator: " ", omittingEmptySubsequences: true)
                guard p.count >= 4, let off = UInt64(p[0]), let len = UInt64(p[1]) else { continue }
                XCTAssertEqual(off, covered)
                covered += len
                if p[3].contains("hole") {
                    XCTAssertTrue(p[3].contains("zero"))
                    XCTAssertEqual(off % UInt64(Self.chunk), 0)
                    holes += (Int(off) / Self.chunk)..<(Int(off + len) / Self.chunk)
                }
            }
            XCTAssertEqual(covered, f.size)
            XCTAssertEqual(holes, f.zeroChunks[k], map.out)
        }
        // Specs work as names; the empty name is the newest; unknown names fail cleanly.
        let latest = E2E.run(nbdinfo, ["--json", s.url + "/"])
        XCTAssertTrue(latest.out.contains(f.revs[1]))
        let daily = E2E.run(nbdinfo, ["--json", s.url + "/daily"])
        XCTAssertTrue(daily.out.contains(f.revs[0]), daily.out)
        let one = E2E.run(nbdinfo, ["--json", s.url + "/1"])
        XCTAssertTrue(one.out.contains(f.revs[0]), one.out)
        let unknown = E2E.run(nbdinfo, [s.url + "/no-such-revision"])
        XCTAssertEqual(unknown.code, 1)
        // The server is still there.
        XCTAssertEqual(E2E.run(nbdinfo, [s.url + "/latest"]).code, 0)
        XCTAssertEqual(s.stop(), 0)
    }

    func testCopyEveryRevisionBitExactAndQemuCompare() throws {
        let nbdcopy = try E2E.tool("nbdcopy")
        let qemuImg = try E2E.tool("qemu-img")
        let f = try makeFixture()
        let s = try NBDServerProcess(job: f.job, test: self)
        let names = [[f.revs[0], "1", "daily"], [f.revs[1], "0", "latest", "weekly"]]
        for (k, specs) in names.enumerated() {
            let want = E2E.sha256(file: f.images[k])
            for spec in specs {
                let out = f.dir + "/copy-\(k)-\(spec).img"
                let r = E2E.run(nbdcopy, [s.url + "/" + spec, out])
                XCTAssertEqual(r.code, 0, r.stderr)
                XCTAssertEqual(E2E.sha256(file: out), want, "revision \(k) as '\(spec)'")
                try? FileManager.default.removeItem(atPath: out)
            }
            let cmp = E2E.run(qemuImg, ["compare", "-f", "raw", f.images[k], s.url + "/" + f.revs[k]])
            XCTAssertEqual(cmp.code, 0, cmp.out + cmp.stderr)
            XCTAssertTrue(cmp.out.contains("identical"), cmp.out)
        }
        // And the two revisions really differ.
        let diff = E2E.run(qemuImg, ["compare", "-f", "raw", f.images[1], s.url + "/" + f.revs[0]])
        XCTAssertEqual(diff.code, 1, diff.out)
        XCTAssertEqual(s.stop(), 0)
    }

    func testFourClientsAtOnce() throws {
        let nbdcopy = try E2E.tool("nbdcopy")
        let f = try makeFixture()
        let s = try NBDServerProcess(job: f.job, test: self)
        var procs: [(Process, String, Int)] = []
        for i in 0..<4 {
            let k = i % 2
            let out = f.dir + "/multi-\(i).img"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: nbdcopy)
            p.arguments = [s.url + "/" + f.revs[k], out]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            procs.append((p, out, k))
        }
        for (p, out, k) in procs {
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0)
            XCTAssertEqual(E2E.sha256(file: out), E2E.sha256(file: f.images[k]))
        }
        XCTAssertTrue(s.log.contains("NBD connection"), s.log)
        XCTAssertEqual(s.stop(), 0)
    }

    func testSingleFileRestoreFromExt4ThroughNbdfuse() throws {
        let mkfs = try E2E.tool("mkfs.ext4")
        let debugfs = try E2E.tool("debugfs")
        let nbdfuse = try E2E.tool("nbdfuse")
        let fusermount = try E2E.tool("fusermount3")
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else { throw E2E.unavailable("no /dev/fuse") }
        let dir = E2E.tempDir(self, "nbd-ext4")
        let content = dir + "/content"
        try FileManager.default.createDirectory(atPath: content + "/etc/app", withIntermediateDirectories: true)
        let secret = E2E.randomBytes(300_000, seed: 42)
        E2E.write(content + "/etc/app/data.bin", secret, at: 0)
        try "hello from last tuesday\n".write(toFile: content + "/etc/app/notes.txt", atomically: true, encoding: .utf8)
        let fs = dir + "/fs.img"
        E2E.truncate(fs, 64 << 20)
        let mk = E2E.run(mkfs, ["-q", "-F", "-d", content, fs])
        XCTAssertEqual(mk.code, 0, mk.stderr)
        let job = dir + "/job"
        XCTAssertEqual(E2E.backy(["-b", job, "init", "file", fs]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "backup", "daily"]).code, 0)
        // The disk changes after the backup.
        E2E.write(fs, [UInt8](repeating: 0xFF, count: 1 << 20), at: 0)
        let s = try NBDServerProcess(job: job, test: self)

        let mnt = dir + "/mnt"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let fuse = Process()
        fuse.executableURL = URL(fileURLWithPath: nbdfuse)
        fuse.arguments = ["-r", mnt + "/disk.raw", s.url + "/daily"]
        fuse.standardOutput = FileHandle.nullDevice
        fuse.standardError = FileHandle.nullDevice
        try fuse.run()
        addTeardownBlock {
            _ = E2E.run(fusermount, ["-u", mnt])
            if fuse.isRunning { fuse.terminate() }
        }
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: mnt + "/disk.raw") && Date() < deadline { usleep(50_000) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: mnt + "/disk.raw"), "nbdfuse did not mount")

        let notes = E2E.run(debugfs, ["-R", "cat /etc/app/notes.txt", mnt + "/disk.raw"])
        XCTAssertEqual(notes.out, "hello from last tuesday\n", notes.stderr)
        let data = E2E.run(debugfs, ["-R", "cat /etc/app/data.bin", mnt + "/disk.raw"])
        XCTAssertEqual(E2E.sha256(data.stdout), E2E.sha256(Data(secret)))

        XCTAssertEqual(E2E.run(fusermount, ["-u", mnt]).code, 0)
        let end = Date().addingTimeInterval(10)
        while fuse.isRunning && Date() < end { usleep(20_000) }
        XCTAssertEqual(s.stop(), 0)
    }

    func testWritableOverlayNeverTouchesTheBackup() throws {
        let f = try makeFixture()
        func snapshot() -> [String: String] {
            var m: [String: String] = [:]
            for p in E2E.files(in: f.job, suffix: "") where !p.contains("/.pins/") && !p.hasSuffix(".log") {
                var st = stat()
                if lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG { m[p] = E2E.sha256(file: p) }
            }
            return m
        }
        let before = snapshot()
        let s = try NBDServerProcess(job: f.job, extra: ["--writable", "--overlay-dir", f.dir], test: self)
        let script = """
            import nbd, sys
            url, size = sys.argv[1], int(sys.argv[2])
            h = nbd.NBD(); h.connect_uri(url)
            assert not h.is_read_only() and h.can_zero() and h.can_trim() and h.can_flush()
            orig = h.pread(8192, 4096)
            h.pwrite(b'\\xAB' * 12288, 2048)
            assert h.pread(16384, 0)[2048:14336] == b'\\xAB' * 12288
            h.zero(4 << 20, 4 << 20)
            assert h.pread(4096, (4 << 20) + 4096) == bytes(4096)
            h.trim(1 << 20, 0); h.flush()
            h.pwrite(b'end' * 512, size - 1536)
            assert h.pread(1536, size - 1536) == b'end' * 512
            other = nbd.NBD(); other.connect_uri(url)
            assert other.pread(8192, 4096) == orig, 'another connection sees the revision'
            other.shutdown()
            h.shutdown()
            again = nbd.NBD(); again.connect_uri(url)
            assert again.pread(8192, 4096) == orig, 'the overlay is gone after disconnect'
            print('ok')
            """
        let r = try python(script, [s.url + "/" + f.revs[0], String(f.size)])
        XCTAssertEqual(r.out, "ok\n", r.stderr)
        XCTAssertEqual(s.stop(), 0)
        XCTAssertEqual(snapshot(), before, "the job directory is unchanged")
        XCTAssertEqual(E2E.files(in: f.dir, suffix: "").filter { $0.contains("backy-nbd-overlay") }, [], "overlay files are unlinked")
        let nbdcopy = try E2E.tool("nbdcopy")
        let s2 = try NBDServerProcess(job: f.job, test: self)
        let out = f.dir + "/after.img"
        XCTAssertEqual(E2E.run(nbdcopy, [s2.url + "/" + f.revs[0], out]).code, 0)
        XCTAssertEqual(E2E.sha256(file: out), E2E.sha256(file: f.images[0]))
    }

    func testDamagedChunkGivesEIOForThatRequestOnly() throws {
        let f = try makeFixture()
        // Damage the chunk at offset 0 of revision 1 (chunk 0 is shared by both).
        let chunks = E2E.files(in: f.job + "/chunks", suffix: ".chunk")
        XCTAssertFalse(chunks.isEmpty)
        let r0 = E2E.backy(["-b", f.job, "find", "-r", f.revs[0]])
        XCTAssertEqual(r0.code, 0)
        let mapPath = r0.out.trimmingCharacters(in: .whitespacesAndNewlines)
        let map = try Data(contentsOf: URL(fileURLWithPath: mapPath))
        let id = map[64..<96].map { String(format: "%02x", $0) }.joined()
        let victim = try XCTUnwrap(chunks.first { $0.hasSuffix(id + ".chunk") })
        chmod(victim, 0o644)
        let fh = try XCTUnwrap(FileHandle(forUpdatingAtPath: victim))
        try fh.seek(toOffset: 100)
        fh.write(Data([0xDE, 0xAD, 0xBE, 0xEF]))
        try fh.close()

        let s = try NBDServerProcess(job: f.job, test: self)
        let script = """
            import nbd, sys, errno
            h = nbd.NBD(); h.connect_uri(sys.argv[1])
            try:
                h.pread(65536, 0)
                print('no error')
            except nbd.Error as e:
                print('EIO' if e.errno in (errno.EIO, 'EIO') else 'errno %s' % e.errno)
            assert len(h.pread(65536, 16 << 20)) == 65536
            print('ok')
            """
        let r = try python(script, [s.url + "/" + f.revs[0]])
        XCTAssertEqual(r.out, "EIO\nok\n", r.stderr)
        XCTAssertEqual(s.stop(), 0)
        XCTAssertTrue(s.log.contains("cannot read"), s.log)
        XCTAssertTrue(s.log.contains(id), "the log names the chunk")
    }

    func testPurgeDuringSessionKeepsWhatTheSessionReads() throws {
        let f = try makeFixture()
        let s = try NBDServerProcess(job: f.job, test: self)
        // Hold a connection to the older revision, forget that revision and
        // purge: its chunks must stay until the client is gone.
        let script = """
            import nbd, sys, hashlib, subprocess
            url, backy, job, rev, size = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
            h = nbd.NBD(); h.connect_uri(url + '/' + rev)
            h.pread(4096, 0)
            subprocess.run([backy, '-b', job, 'forget', '-r', rev], check=True, capture_output=True)
            p = subprocess.run([backy, '-b', job, 'purge'], capture_output=True)
            assert p.returncode == 0, p.stderr
            m = hashlib.sha256()
            off = 0
            while off < size:
                n = min(4 << 20, size - off)
                m.update(h.pread(n, off)); off += n
            print(m.hexdigest())
            """
        let r = try python(script, [s.url, E2E.binary, f.job, f.revs[0], String(f.size)])
        XCTAssertEqual(r.out.trimmingCharacters(in: .whitespacesAndNewlines), E2E.sha256(file: f.images[0]), r.stderr)
        XCTAssertEqual(s.stop(), 0)
        // With the session gone, purge frees the forgotten revision's chunks.
        let before = E2E.files(in: f.job + "/chunks", suffix: ".chunk").count
        XCTAssertEqual(E2E.backy(["-b", f.job, "purge"]).code, 0)
        XCTAssertLessThan(E2E.files(in: f.job + "/chunks", suffix: ".chunk").count, before)
    }

    func testSigtermStopsCleanlyAndRemovesPins() throws {
        let f = try makeFixture()
        let s = try NBDServerProcess(job: f.job, test: self)
        let script = """
            import nbd, sys, time
            h = nbd.NBD(); h.connect_uri(sys.argv[1])
            h.pread(4096, 0)
            print('connected', flush=True)
            time.sleep(30)
            """
        let py = Process()
        py.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        py.arguments = ["-c", script, s.url + "/latest"]
        let pipe = Pipe()
        py.standardOutput = pipe
        py.standardError = FileHandle.nullDevice
        _ = try python("pass")
        try py.run()
        addTeardownBlock { if py.isRunning { py.terminate() } }
        _ = pipe.fileHandleForReading.availableData  // "connected"
        let pins = try FileManager.default.contentsOfDirectory(atPath: f.job + "/.pins")
        XCTAssertTrue(pins.contains { $0.hasSuffix("." + f.revs[1] + ".map") }, "\(pins)")
        XCTAssertEqual(s.stop(), 0)
        let after = try FileManager.default.contentsOfDirectory(atPath: f.job + "/.pins")
        XCTAssertEqual(after.filter { $0 != "gate" }, [], "pins removed")
        XCTAssertTrue(s.log.contains("NBD server stopped"), s.log)
    }
}
