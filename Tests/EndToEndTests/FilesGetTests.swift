// FilesGetTests: `backy files` and `backy get` end to end on the GPT, the
// unpartitioned and the damaged fixtures: listings, single files and whole
// trees copied bit-exact with mode and mtime, a file to stdout, symbolic
// links kept as links, ambiguous or wrong paths refused with one error
// line, nothing overwritten, and no private mount, process or pin left.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class FilesGetTests: XCTestCase {
    let deep = (0..<12).map { "level\($0)" }.joined(separator: "/")

    /// Each test gets its own TMPDIR (see PrivateTMPDIR).
    var tmpdir: PrivateTMPDIR!
    var tmp: String { tmpdir.path }

    override func setUp() {
        super.setUp()
        tmpdir = PrivateTMPDIR("files-get")
    }

    override func tearDown() {
        tmpdir.restore()
        super.tearDown()
    }

    func assertNothingLeft(_ job: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(MountFixture.pins(job), [], "pins", file: file, line: line)
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? []).filter { $0.hasPrefix("backy-mount.") }
        XCTAssertEqual(left, [], "private mount directories", file: file, line: line)
        XCTAssertEqual(MountFixture.processes(mentioning: tmp + "/backy-mount."), [], file: file, line: line)
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        XCTAssertFalse(info.contains(tmp + "/backy-mount."), info, file: file, line: line)
    }

    func testFilesAndGetOnGPT() throws {
        try MountFixture.require(MountTests.tools)
        let d = E2E.tempDir(self, "files-gpt")
        let disk = MountFixture.gpt(d, seed: MountFixture.seed &+ 10)
        let job = MountFixture.job(d, disk.image)
        let t1 = disk.trees["part1"]!

        // Without PATH: the partitions.
        let parts = E2E.backy(["-b", job, "files"])
        XCTAssertEqual(parts.code, 0, parts.stderr)
        XCTAssertTrue(parts.out.contains("part1.raw") && parts.out.contains("readable as part1:/PATH"), parts.out)
        // A directory.
        let ls = E2E.backy(["-b", job, "files", "part1:/"])
        XCTAssertEqual(ls.code, 0, ls.stderr)
        let lines = ls.out.split(separator: "\n")
        XCTAssertTrue(lines.contains { $0.hasPrefix("-rw-------") && $0.hasSuffix("  etc-fstab") && $0.contains(" 27  ") && $0.contains("2020-09-13 12:26:40") }, ls.out)
        XCTAssertTrue(lines.contains { $0.hasPrefix("lrwxrwxrwx") && $0.hasSuffix("fstab-link -> etc-fstab") }, ls.out)
        XCTAssertTrue(lines.contains { $0.hasPrefix("drwx") && $0.hasSuffix("level0/") }, ls.out)
        // The deepest directory.
        let deepLs = E2E.backy(["-b", job, "files", "part1:/\(deep)"])
        XCTAssertEqual(deepLs.out.split(separator: "\n").map { String($0.split(separator: " ").last!) },
                       ["file-0", "file-1048583", "file-4095"], deepLs.out)

        // One file, into a directory, keeping mode and mtime.
        let out = d + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let g = E2E.backy(["-b", job, "get", "part1:/etc-fstab", out])
        XCTAssertEqual(g.code, 0, g.stderr)
        XCTAssertEqual(E2E.run("/usr/bin/cmp", [out + "/etc-fstab", t1 + "/etc-fstab"]).code, 0)
        var st = stat()
        XCTAssertEqual(stat(out + "/etc-fstab", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o600)
        XCTAssertEqual(st.st_mtim.tv_sec, 1_600_000_000)
        // Never over an existing file.
        let again = E2E.backy(["-b", job, "get", "part1:/etc-fstab", out])
        XCTAssertEqual(again.code, 1)
        XCTAssertTrue(again.stderr.hasPrefix("Error: ") && again.stderr.contains("exists"), again.stderr)
        XCTAssertEqual(again.stderr.split(separator: "\n").count, 1, again.stderr)
        // A whole tree, to a new name.
        let tree = E2E.backy(["-b", job, "get", "part2:/", out + "/part2-copy"])
        XCTAssertEqual(tree.code, 0, tree.stderr)
        let t2 = disk.trees["part2"]!
        XCTAssertEqual(MountFixture.listing(out + "/part2-copy"), MountFixture.listing(t2))
        for f in MountFixture.regularFiles(t2) {
            XCTAssertEqual(E2E.run("/usr/bin/cmp", [out + "/part2-copy/" + f, t2 + "/" + f]).code, 0, f)
        }
        XCTAssertEqual(String(cString: realpath(out + "/part2-copy/fstab-link", nil)), out + "/part2-copy/etc-fstab")
        XCTAssertEqual(lstat(out + "/part2-copy/fstab-link", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFLNK)
        // A file to stdout, following a link inside the revision.
        let cat = E2E.backy(["-b", job, "get", "part1:/file-5242883", "-"])
        XCTAssertEqual(cat.code, 0, cat.stderr)
        XCTAssertEqual(E2E.sha256(cat.stdout), E2E.sha256(file: t1 + "/file-5242883"))
        let viaLink = E2E.backy(["-b", job, "get", "part1:/fstab-link", "-"])
        XCTAssertEqual(viaLink.out, "UUID=x / ext4 defaults 0 1\n")

        // Two ext4 filesystems: a path without partition is ambiguous.
        for (args, text) in [
            (["files", "/etc-fstab"], "name one"),
            (["files", "part7:/"], "has no part7"),
            (["files", "part3:/"], "--kernel"),
            (["files", "part1:/no/such/file"], "does not exist"),
            (["get", "part1:/no-such", out], "does not exist"),
            (["files", "-r", "nosuch", "part1:/"], "unknown revision"),
        ] {
            let r = E2E.backy(["-b", job] + args)
            XCTAssertEqual(r.code, 1, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("Error: ") && r.stderr.contains(text), "\(args): \(r.stderr)")
        }
        assertNothingLeft(job)
    }

    func testFilesAndGetOnUnpartitionedDisk() throws {
        try MountFixture.require(MountTests.tools)
        let d = E2E.tempDir(self, "files-bare")
        let disk = MountFixture.bare(d, seed: MountFixture.seed &+ 11)
        let job = MountFixture.job(d, disk.image)
        let t = disk.trees["disk"]!
        // One filesystem: no partition prefix needed; disk: works too.
        let ls = E2E.backy(["-b", job, "files", "/\(deep)"])
        XCTAssertEqual(ls.code, 0, ls.stderr)
        XCTAssertEqual(ls.out.split(separator: "\n").count, 3, ls.out)
        XCTAssertEqual(E2E.backy(["-b", job, "files", "disk:/"]).code, 0)
        let cwd = d + "/here"
        try FileManager.default.createDirectory(atPath: cwd, withIntermediateDirectories: true)
        let g = E2E.backy(["-b", job, "get", "/level0"], cwd: cwd)
        XCTAssertEqual(g.code, 0, g.stderr)
        XCTAssertEqual(MountFixture.listing(cwd + "/level0"), MountFixture.listing(t + "/level0"))
        for f in MountFixture.regularFiles(t + "/level0") {
            XCTAssertEqual(E2E.run("/usr/bin/cmp", [cwd + "/level0/" + f, t + "/level0/" + f]).code, 0, f)
        }
        // Never into a job directory (this one's or another's), however
        // the destination is spelled: a file there could pass for a chunk,
        // a map or a revision.
        let file = MountFixture.regularFiles(t + "/level0").first!
        let chunkDir = job + "/chunks/" + (try FileManager.default.contentsOfDirectory(atPath: job + "/chunks")).filter { !$0.hasPrefix(".") }.sorted().first!
        let before = Set(E2E.files(in: job, suffix: ""))
        for dest in [job, job + "/stolen", d + "/here/../" + (job as NSString).lastPathComponent + "/x",
                     chunkDir + "/" + String(repeating: "ab", count: 32) + ".chunk"] {
            let r = E2E.backy(["-b", job, "get", "/level0/" + file, dest])
            XCTAssertEqual(r.code, 1, "\(dest): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: ") }.count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("Error: refusing to copy to "), r.stderr)
        }
        XCTAssertEqual(Set(E2E.files(in: job, suffix: "")), before, "nothing new in the job directory")
        assertNothingLeft(job)
    }

    func testDamagedRevision() throws {
        try MountFixture.require(MountTests.tools)
        let d = E2E.tempDir(self, "files-damaged")
        let disk = MountFixture.damaged(d, seed: MountFixture.seed &+ 12)
        let job = MountFixture.job(d, disk.image)
        let parts = E2E.backy(["-b", job, "files"])
        XCTAssertEqual(parts.code, 0, parts.stderr)
        XCTAssertTrue(parts.out.contains("part2.raw") && parts.out.contains("no filesystem recognized"), parts.out)
        let r = E2E.backy(["-b", job, "files", "part2:/"])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.hasPrefix("Error: part2 (no filesystem)"), r.stderr)
        // The mount comes up with what can be read; part2 is not opened.
        let mp = d + "/mnt"
        let m = backyMount(job, mp)
        XCTAssertTrue(m.out.contains("part2.raw"), m.out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: mp + "/part2"))
        XCTAssertEqual(E2E.run("/usr/bin/cmp", [mp + "/part2.raw", disk.partitionImages["part2"]!]).code, 0)
        XCTAssertEqual(E2E.backy(["umount", mp]).code, 0)
        assertNothingLeft(job)
    }

    /// `get` killed (-9) while it holds a file of the revision open (its
    /// stdout is a pipe nobody reads): its private mount, fuse2fs and the
    /// process itself are gone soon after, not stuck on a request to its
    /// own dead FUSE loop; the pins go with the next purge.
    func testKillNineOfGetCleansUp() throws {
        try MountFixture.require(MountTests.tools)
        let d = E2E.tempDir(self, "files-kill")
        let disk = MountFixture.bare(d, seed: MountFixture.seed &+ 13)
        let job = MountFixture.job(d, disk.image)
        let get = Process()
        get.executableURL = URL(fileURLWithPath: E2E.binary)
        get.arguments = ["-b", job, "get", "/file-5242883", "-"]
        let unread = Pipe()  // never read: get blocks once it is full
        get.standardOutput = unread
        get.standardError = FileHandle.nullDevice
        try get.run()
        XCTAssertTrue(MountFixture.eventually(20) {
            ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").contains("/disk rw,")
        }, "get started and mounted")
        usleep(300_000)  // it is now blocked writing, its file open
        kill(get.processIdentifier, SIGKILL)
        get.waitUntilExit()
        XCTAssertTrue(MountFixture.eventually(15) {
            !((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").contains(self.tmp + "/backy-mount.")
        }, "the private mount is gone")
        XCTAssertTrue(MountFixture.eventually(15) {
            MountFixture.processes(mentioning: "get /file-5242883").isEmpty
                && MountFixture.processes(mentioning: self.tmp + "/backy-mount.").isEmpty
        }, "\(MountFixture.processes(mentioning: "get /file-5242883")) \(MountFixture.processes(mentioning: self.tmp + "/backy-mount."))")
        XCTAssertEqual(E2E.backy(["-b", job, "purge"]).code, 0)
        assertNothingLeft(job)
    }
}
