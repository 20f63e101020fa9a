// TrustInitTests: `backy init` stores an absolute source path, refuses a
// missing or unseekable source, creates the job directory 0700 (0750 with
// --group-access) whatever the umask; a FIFO as source fails a backup at
// once instead of blocking; logs are never written through a symlink.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class TrustInitTests: XCTestCase {
    func mode(_ p: String) -> Int {
        var st = stat()
        return lstat(p, &st) == 0 ? Int(st.st_mode & 0o7777) : -1
    }

    /// A job directory with a one-character relative name ("j", "k/"):
    /// Foundation's deletingLastPathComponent trapped on it (Illegal
    /// instruction in init); the job now works like any other.
    func testOneCharacterJobDirectoryNames() throws {
        let d = E2E.tempDir(self, "init-short")
        E2E.write(d + "/img", E2E.randomBytes(300_000, seed: 41), at: 0)
        for name in ["j", "k/"] {
            let r = E2E.backy(["-b", name, "init", "file", "img"], cwd: d)
            XCTAssertEqual(r.code, 0, "\(name): \(r.stderr)")
            XCTAssertNil(r.signal, name)
            XCTAssertEqual(E2E.backy(["-b", name, "backup", "daily"], cwd: d).code, 0, name)
            let out = E2E.backy(["-b", name, "restore", "-"], cwd: d)
            XCTAssertEqual(out.code, 0, out.stderr)
            XCTAssertEqual(E2E.sha256(out.stdout), E2E.sha256(file: d + "/img"), name)
        }
    }

    func testInitStoresAnAbsolutePathAndChecksTheSource() throws {
        let d = E2E.tempDir(self, "init")
        E2E.write(d + "/disk.img", E2E.randomBytes(3 << 20, seed: Trust.seed), at: 0)
        // A relative source, typed in the image's directory.
        let i = E2E.run(E2E.binary, ["-b", "job", "init", "file", "./sub/../disk.img"], cwd: d)
        XCTAssertEqual(i.code, 1, "sub/ does not exist, so neither does the path: \(i.stderr)")
        let ok = E2E.run(E2E.binary, ["-b", "job", "init", "file", "disk.img"], cwd: d)
        XCTAssertEqual(ok.code, 0, ok.stderr)
        let cfg = try String(contentsOfFile: d + "/job/config", encoding: .utf8)
        XCTAssertEqual(cfg, "{filename: \(d)/disk.img, type: file}\n")
        // A backup started anywhere else works.
        let b = E2E.run(E2E.binary, ["-b", d + "/job", "backup", "daily"], cwd: "/")
        XCTAssertEqual(b.code, 0, b.stderr)
        XCTAssertEqual(E2E.sha256(E2E.backy(["-b", d + "/job", "restore", "-"]).stdout), E2E.sha256(file: d + "/disk.img"))
        // A missing source: one line, exit 1, no job directory.
        let missing = E2E.backy(["-b", d + "/job2", "init", "file", d + "/nope.img"])
        XCTAssertEqual(missing.code, 1)
        XCTAssertEqual(Trust.errorLines(missing.stderr), ["Error: Source is not ready: \(d)/nope.img does not exist: No such file or directory"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/job2"))
        // A FIFO and a directory are refused at once.
        mkfifo(d + "/fifo", 0o644)
        let f = Trust.measure(["-b", d + "/job3", "init", "file", d + "/fifo"], timeout: 10)
        XCTAssertEqual(f.code, 1, f.stderr)
        XCTAssertEqual(Trust.errorLines(f.stderr), ["Error: Source is not ready: \(d)/fifo is a FIFO (named pipe); a file source must be a regular file or a block device"])
        let dir = E2E.backy(["-b", d + "/job3", "init", "file", d])
        XCTAssertEqual(dir.code, 1, dir.stderr)
        XCTAssertTrue(dir.stderr.contains("is a directory"), dir.stderr)
    }

    /// A job whose config names a FIFO (edited by hand, or replaced later):
    /// the backup fails with one line at once instead of blocking in open().
    func testBackupOfAFIFOSourceFailsAtOnce() throws {
        let t = Trust.job(self, mib: 1)
        let fifo = t.dir + "/fifo"
        mkfifo(fifo, 0o644)
        chmod(t.job + "/config", 0o644)
        try "{filename: \(fifo), type: file}\n".write(toFile: t.job + "/config", atomically: true, encoding: .utf8)
        let m = Trust.measure(["-b", t.job, "backup", "daily"], timeout: 15)
        XCTAssertEqual(m.signal, 0, "did not finish: \(m.stderr)")
        XCTAssertEqual(m.code, 1, m.stderr)
        XCTAssertEqual(Trust.errorLines(m.stderr), ["Error: Source is not ready: \(fifo) is a FIFO (named pipe); a file source must be a regular file or a block device"])
        XCTAssertLessThan(m.seconds, 10)
    }

    func testJobDirectoryIsPrivateWhateverTheUmask() throws {
        let d = E2E.tempDir(self, "umask")
        E2E.write(d + "/disk.img", E2E.randomBytes(1 << 20, seed: Trust.seed), at: 0)
        let old = umask(0)
        defer { umask(old) }
        XCTAssertEqual(E2E.backy(["-b", d + "/a/b/job", "init", "file", d + "/disk.img"]).code, 0)
        XCTAssertEqual(mode(d + "/a/b/job"), 0o700)
        XCTAssertEqual(mode(d + "/a"), 0o755, "parents created on the way are 0755")
        XCTAssertEqual(E2E.backy(["-b", d + "/gjob", "init", "--group-access", "file", d + "/disk.img"]).code, 0)
        XCTAssertEqual(mode(d + "/gjob"), 0o750)
        let help = E2E.backy(["init", "--help"])
        XCTAssertTrue(help.out.contains("--group-access"), help.out)
    }

    /// A symlink planted as the job's backy.log is never followed: not by
    /// the job log of a command run by hand, not with -l.
    func testLogsAreNeverWrittenThroughASymlink() throws {
        let t = Trust.job(self, mib: 1)
        let victim = t.dir + "/victim"
        E2E.write(victim, Array("precious\n".utf8), at: 0)
        unlink(t.job + "/backy.log")
        symlink(victim, t.job + "/backy.log")
        let b = E2E.backy(["-b", t.job, "backup", "daily"])
        XCTAssertEqual(b.code, 0, b.stderr)
        XCTAssertTrue(b.stderr.contains("Not writing the job log \(t.job)/backy.log: it is not a regular file"), b.stderr)
        let l = E2E.backy(["-b", t.job, "-l", t.job + "/backy.log", "backup", "daily"])
        XCTAssertEqual(l.code, 1, l.stderr)
        XCTAssertEqual(Trust.errorLines(l.stderr), ["Error: cannot open log file \(t.job)/backy.log: it is a symlink"])
        XCTAssertEqual(Trust.bytes(victim), Array("precious\n".utf8), "the symlink's target is untouched")
    }
}
