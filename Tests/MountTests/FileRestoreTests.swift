// FileRestoreTests: PATH parsing, resolving paths inside a volume without
// ever leaving it through symbolic links or "..", the `ls -l` mode strings,
// copies that keep mode and mtime, drop set-user-ID bits, recreate links and
// keep holes, and the drill's verdict rules.
import ChunkStore
import Foundation
@testable import Mount
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class FileRestoreTests: XCTestCase {
    var dir = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "/backy-filerestore-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testParse() {
        XCTAssertEqual(FileRestore.parse("part1:/etc/fstab").volume, "part1")
        XCTAssertEqual(FileRestore.parse("part1:/etc/fstab").path, "/etc/fstab")
        XCTAssertEqual(FileRestore.parse("part12:").path, "/")
        XCTAssertEqual(FileRestore.parse("disk:/a").volume, "disk")
        XCTAssertNil(FileRestore.parse("/etc/fstab").volume)
        // A colon in a file name is not a volume.
        XCTAssertNil(FileRestore.parse("/srv/a:b").volume)
        XCTAssertEqual(FileRestore.parse("/srv/a:b").path, "/srv/a:b")
        XCTAssertNil(FileRestore.parse("partx:/a").volume)
    }

    func testResolveStaysInsideTheVolume() throws {
        let root = dir + "/root"
        try FileManager.default.createDirectory(atPath: root + "/etc/sub", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: root + "/etc/sub/file", contents: Data("x".utf8))
        // Links that would lead out of the volume on this machine.
        symlink("/etc", root + "/abs")                 // absolute: the volume's /etc
        symlink("../../../../../../etc", root + "/up")  // ".." stops at the root
        symlink("etc/sub", root + "/rel")
        symlink("loop2", root + "/loop1")
        symlink("loop1", root + "/loop2")
        XCTAssertEqual(try FileRestore.resolve(root: root, "/abs/sub/file", followLast: false), root + "/etc/sub/file")
        XCTAssertEqual(try FileRestore.resolve(root: root, "/up/sub/file", followLast: false), root + "/etc/sub/file")
        XCTAssertEqual(try FileRestore.resolve(root: root, "rel/file", followLast: false), root + "/etc/sub/file")
        XCTAssertEqual(try FileRestore.resolve(root: root, "/../../etc", followLast: false), root + "/etc")
        XCTAssertEqual(try FileRestore.resolve(root: root, "/abs", followLast: false), root + "/abs")
        XCTAssertEqual(try FileRestore.resolve(root: root, "/abs", followLast: true), root + "/etc")
        XCTAssertEqual(try FileRestore.resolve(root: root, "/", followLast: false), root)
        XCTAssertThrowsError(try FileRestore.resolve(root: root, "/loop1/x", followLast: false))
        XCTAssertThrowsError(try FileRestore.resolve(root: root, "/etc/missing", followLast: false))
    }

    func testModeString() {
        XCTAssertEqual(FileRestore.modeString(S_IFREG | 0o644), "-rw-r--r--")
        XCTAssertEqual(FileRestore.modeString(S_IFDIR | 0o1777), "drwxrwxrwt")
        XCTAssertEqual(FileRestore.modeString(S_IFREG | 0o4755), "-rwsr-xr-x")
        XCTAssertEqual(FileRestore.modeString(S_IFREG | 0o2644), "-rw-r-Sr--")
        XCTAssertEqual(FileRestore.modeString(S_IFLNK | 0o777), "lrwxrwxrwx")
    }

    func testCopyKeepsModeTimeLinksAndHoles() throws {
        let src = dir + "/src"
        try FileManager.default.createDirectory(atPath: src + "/d", withIntermediateDirectories: true)
        var data = [UInt8](repeating: 0, count: 3 << 20)
        for i in 0..<65536 { data[i] = UInt8(truncatingIfNeeded: i &* 31) }
        data[data.count - 1] = 9
        _ = FileManager.default.createFile(atPath: src + "/d/big", contents: Data(data))
        _ = FileManager.default.createFile(atPath: src + "/d/suid", contents: Data("s".utf8))
        chmod(src + "/d/suid", 0o4755)
        chmod(src + "/d/big", 0o640)
        symlink("big", src + "/d/link")
        mkfifo(src + "/d/fifo", 0o600)
        var t = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_234_567_890, tv_nsec: 0)]
        utimensat(AT_FDCWD, src + "/d/big", &t, 0)
        utimensat(AT_FDCWD, src + "/d", &t, 0)
        chmod(src + "/d", 0o750)

        let dst = try FileRestore.destination(for: src + "/d", dest: dir)
        XCTAssertEqual(dst, dir + "/d")
        XCTAssertThrowsError(try FileRestore.destination(for: src + "/d", dest: src))  // src/d exists
        let r = try FileRestore.copy(src + "/d", to: dir + "/out")
        XCTAssertEqual(r.files, 2)
        XCTAssertEqual(r.links, 1)
        XCTAssertEqual(r.directories, 1)
        XCTAssertEqual(r.skipped, [src + "/d/fifo"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/out/big")), Data(data))
        var st = stat()
        XCTAssertEqual(lstat(dir + "/out/big", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o640)
        XCTAssertEqual(st.st_mtim.tv_sec, 1_234_567_890)
        // The zeros between the first 64 KiB and the last byte are a hole.
        XCTAssertLessThan(Int(st.st_blocks) * 512, 1 << 20)
        XCTAssertEqual(lstat(dir + "/out/suid", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o755)
        XCTAssertEqual(FileRestore.readLink(dir + "/out/link"), "big")
        XCTAssertEqual(lstat(dir + "/out", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o750)
        XCTAssertEqual(st.st_mtim.tv_sec, 1_234_567_890)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out/fifo"))
    }

    func testDrillVerdicts() {
        func fs(_ v: String) -> DrillResult.Filesystem {
            DrillResult.Filesystem(name: "p", type: "ext4", offset: 0, size: 1, checker: nil, verdict: v,
                                   exitCode: nil, seconds: nil, note: nil, output: [])
        }
        var r = DrillResult(time: "", revision: "r", revisionTime: nil, verdict: "", exitCode: -1, seconds: 0,
                            partitionTable: "gpt", problems: [], filesystems: [fs("clean"), fs("skipped")], message: nil)
        Drill.conclude(&r)
        XCTAssertEqual(r.exitCode, 0)
        r.filesystems = [fs("clean"), fs("timeout")]
        Drill.conclude(&r)
        XCTAssertEqual(r.exitCode, 2)
        r.filesystems = [fs("failed"), fs("timeout")]
        Drill.conclude(&r)
        XCTAssertEqual(r.exitCode, 1)
        r.filesystems = [fs("skipped")]
        Drill.conclude(&r)
        XCTAssertEqual(r.exitCode, 2)
        r.filesystems = [fs("clean")]
        r.problems = ["partition 2 ends beyond the disk"]
        Drill.conclude(&r)
        XCTAssertEqual(r.exitCode, 1)
        XCTAssertEqual(Drill.verdict(program: "e2fsck", status: 4), "failed")
        XCTAssertEqual(Drill.verdict(program: "e2fsck", status: 8), "failed")
        XCTAssertEqual(Drill.verdict(program: "fsck.vfat", status: 2), "error")
        XCTAssertEqual(Drill.verdict(program: "e2fsck", status: 137), "error")
    }
}
