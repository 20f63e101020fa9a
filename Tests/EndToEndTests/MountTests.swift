// MountTests: `backy mount` / `backy umount` end to end, with real FUSE,
// fuse2fs, libblkid and the real tools: every file of every ext4 partition
// reads back bit-exact (cmp against the fixture), disk.raw and partN.raw
// equal the image and the partition images, the vfat partition reads through
// mtools on part3.raw, a deep tree lists completely, two processes read at
// once, purge beside a mount removes nothing the mount reads, umount leaves
// no mount, process or pin, and kill -9 of the serving process cleans up
// as a dead session does.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class MountTests: XCTestCase {
    static let tools = ["fuse2fs", "fusermount3", "sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "dumpe2fs", "cmp"]

    /// Every regular file of `tree` equals the one under `mounted` (cmp),
    /// and the listings are the same.
    func assertSameFiles(_ tree: String, _ mounted: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(MountFixture.listing(mounted), MountFixture.listing(tree), "listing of \(mounted)", file: file, line: line)
        let files = MountFixture.regularFiles(tree)
        XCTAssertGreaterThan(files.count, 5, file: file, line: line)
        for f in files {
            let r = E2E.run("/usr/bin/cmp", [tree + "/" + f, mounted + "/" + f])
            XCTAssertEqual(r.code, 0, "cmp \(f): \(r.out)\(r.stderr)", file: file, line: line)
        }
    }

    func testGPTDiskPartitionsAndFilesBitExact() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "mount-gpt")
        let disk = MountFixture.gpt(d, seed: MountFixture.seed)
        let job = MountFixture.job(d, disk.image)
        let mp = d + "/mnt"
        let r = backyMount(job, mp)
        XCTAssertTrue(r.out.contains("GPT partition table, 3 partitions"), r.out)
        XCTAssertTrue(r.out.contains("part3.raw"), r.out)

        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mp).sorted(),
                       [".backy-mount", "disk.raw", "part1", "part1.raw", "part2", "part2.raw", "part3.raw", "partitions.txt"])
        XCTAssertEqual(E2E.run("/usr/bin/cmp", [mp + "/disk.raw", disk.image]).code, 0, "disk.raw")
        for p in ["part1", "part2", "part3"] {
            XCTAssertEqual(E2E.run("/usr/bin/cmp", [mp + "/\(p).raw", disk.partitionImages[p]!]).code, 0, "\(p).raw")
        }
        assertSameFiles(disk.trees["part1"]!, mp + "/part1")
        assertSameFiles(disk.trees["part2"]!, mp + "/part2")
        // Mode and mtime come through fuse2fs.
        var st = stat()
        XCTAssertEqual(lstat(mp + "/part1/etc-fstab", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o600)
        XCTAssertEqual(st.st_mtim.tv_sec, 1_600_000_000)
        // The deep tree lists completely through ls -R.
        let ls = E2E.run("/bin/ls", ["-R", mp + "/part1"])
        XCTAssertEqual(ls.code, 0)
        XCTAssertTrue(ls.out.contains("level11:\nfile-0\nfile-1048583\nfile-4095\n"), ls.out)
        // vfat is not opened without --kernel; its view reads with mtools.
        let parts = try String(contentsOfFile: mp + "/partitions.txt", encoding: .utf8)
        XCTAssertTrue(parts.contains("vfat") && parts.contains("--kernel"), parts)
        XCTAssertTrue(parts.contains("ext4 \"root\""), parts)
        let fat = E2E.run("/bin/sh", ["-c", "mcopy -n -i \(mp)/part3.raw ::EFI.BIN \(d)/efi.out"])
        XCTAssertEqual(fat.code, 0, fat.stderr)
        XCTAssertEqual(E2E.run("/usr/bin/cmp", [d + "/efi.out", disk.trees["part3"]! + "/EFI.BIN"]).code, 0)
        // Read-only all the way down.
        XCTAssertNotEqual(E2E.run("/bin/sh", ["-c", "echo x > \(mp)/part1/new"]).code, 0)
        XCTAssertNotEqual(E2E.run("/bin/sh", ["-c", "echo x >> \(mp)/disk.raw"]).code, 0)
        // The mounts of part1/ and part2/ are fuse2fs, nosuid, nodev, noexec.
        let info = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        let inner = info.split(separator: "\n").filter { $0.contains(" \(mp)/part") }
        XCTAssertEqual(inner.count, 2, info)
        for l in inner { XCTAssertTrue(l.contains("nosuid,nodev,noexec"), String(l)) }

        XCTAssertEqual(E2E.backy(["umount", mp]).code, 0)
    }

    func testUnpartitionedExt4() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "mount-bare")
        let disk = MountFixture.bare(d, seed: MountFixture.seed)
        let job = MountFixture.job(d, disk.image)
        let mp = d + "/mnt"
        let r = backyMount(job, mp)
        XCTAssertTrue(r.out.contains("no partition table"), r.out)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mp).sorted(),
                       [".backy-mount", "disk", "disk.raw", "partitions.txt"])
        assertSameFiles(disk.trees["disk"]!, mp + "/disk")
        XCTAssertEqual(E2E.run("/usr/bin/cmp", [mp + "/disk.raw", disk.image]).code, 0)
        XCTAssertEqual(E2E.backy(["umount", mp]).code, 0)
        XCTAssertEqual(MountFixture.mounts(mp), [])
    }

    /// Two processes read different big files and the same one at once,
    /// through a cache smaller than what they read.
    func testConcurrentReadersFromTwoProcesses() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "mount-conc")
        let disk = MountFixture.gpt(d, seed: MountFixture.seed &+ 1)
        let job = MountFixture.job(d, disk.image)
        let mp = d + "/mnt"
        backyMount(job, mp, ["--cache-mib", "8"])
        let big = "file-5242883"
        let a = mp + "/part1/\(big)", b = mp + "/part2/\(big)"
        // Each reader writes its copies; both run at the same time.
        let script = """
            (for i in 1 2 3; do cat \(a) > \(d)/a$i; cat \(b) > \(d)/b$i; done) &
            (for i in 4 5 6; do cat \(b) > \(d)/b$i; cat \(a) > \(d)/a$i; done) &
            cat \(mp)/disk.raw > \(d)/disk.copy &
            wait
            """
        XCTAssertEqual(E2E.run("/bin/sh", ["-c", script]).code, 0)
        for i in 1...6 {
            XCTAssertEqual(E2E.run("/usr/bin/cmp", [d + "/a\(i)", disk.trees["part1"]! + "/\(big)"]).code, 0, "a\(i)")
            XCTAssertEqual(E2E.run("/usr/bin/cmp", [d + "/b\(i)", disk.trees["part2"]! + "/\(big)"]).code, 0, "b\(i)")
        }
        XCTAssertEqual(E2E.run("/usr/bin/cmp", [d + "/disk.copy", disk.image]).code, 0)
    }

    /// The revision is forgotten and purged while mounted: its chunks stay
    /// (the mount pins the map) and every file still reads bit-exact; after
    /// umount the next purge frees them.
    func testPurgeBesideAMountLosesNothing() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "mount-purge")
        let disk = MountFixture.gpt(d, seed: MountFixture.seed &+ 2)
        let job = MountFixture.job(d, disk.image)
        let mp = d + "/mnt"
        // A cache of 2 chunks: reading again after the purge goes to the store.
        backyMount(job, mp, ["--cache-mib", "8"])
        let chunks = MountFixture.chunkFiles(job)
        XCTAssertGreaterThan(chunks, 0)
        XCTAssertEqual(MountFixture.pins(job).filter { $0.hasSuffix(".map") }.count, 1, "\(MountFixture.pins(job))")
        let id = E2E.revisionIDs(job)[0]
        XCTAssertEqual(E2E.backy(["-b", job, "forget", "-r", id]).code, 0)
        let p = E2E.backy(["-b", job, "purge"])
        XCTAssertEqual(p.code, 0, p.stderr)
        XCTAssertEqual(MountFixture.chunkFiles(job), chunks, "purge removed chunks of a mounted revision")
        assertSameFiles(disk.trees["part1"]!, mp + "/part1")
        assertSameFiles(disk.trees["part2"]!, mp + "/part2")
        XCTAssertEqual(E2E.run("/usr/bin/cmp", [mp + "/disk.raw", disk.image]).code, 0)

        XCTAssertEqual(E2E.backy(["umount", mp]).code, 0)
        XCTAssertEqual(MountFixture.pins(job), [])
        XCTAssertEqual(E2E.backy(["-b", job, "purge"]).code, 0)
        XCTAssertEqual(MountFixture.chunkFiles(job), 0, "the forgotten revision's chunks go once it is unmounted")
    }

    func testUmountLeavesNoMountProcessOrPin() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "mount-umount")
        let disk = MountFixture.gpt(d, seed: MountFixture.seed &+ 3)
        let job = MountFixture.job(d, disk.image)
        let mp = d + "/mnt"
        backyMount(job, mp)
        XCTAssertEqual(MountFixture.mounts(mp).count, 3)
        XCTAssertGreaterThanOrEqual(MountFixture.processes(mentioning: mp).count, 4, "server, watchdog, two fuse2fs")
        XCTAssertEqual(MountFixture.pins(job).count, 2)
        // A second mount on the same point is refused, one line.
        let again = E2E.backy(["-b", job, "mount", mp])
        XCTAssertEqual(again.code, 1)
        XCTAssertTrue(again.stderr.hasPrefix("Error: ") && again.stderr.contains("already a mount point"), again.stderr)
        // Busy: a process with its working directory in part1/ keeps it.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sleep")
        holder.arguments = ["30"]
        holder.currentDirectoryURL = URL(fileURLWithPath: mp + "/part1")
        try holder.run()
        let busy = E2E.backy(["umount", mp])
        XCTAssertEqual(busy.code, 1)
        XCTAssertTrue(busy.stderr.contains("in use") && busy.stderr.contains("nothing was unmounted"), busy.stderr)
        XCTAssertEqual(MountFixture.mounts(mp).count, 3, "a refused umount changes nothing")
        holder.terminate()
        holder.waitUntilExit()

        let u = E2E.backy(["umount", mp])
        XCTAssertEqual(u.code, 0, u.stderr)
        XCTAssertEqual(MountFixture.mounts(mp), [])
        XCTAssertEqual(MountFixture.processes(mentioning: mp), [])
        XCTAssertEqual(MountFixture.pins(job), [])
        // Not a backy mount (any more): one error line.
        let none = E2E.backy(["umount", mp])
        XCTAssertEqual(none.code, 1)
        XCTAssertEqual(none.stderr.split(separator: "\n").count, 1, none.stderr)
        XCTAssertTrue(none.stderr.hasPrefix("Error: "), none.stderr)
    }

    func testKillNineCleansUp() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "mount-kill")
        let disk = MountFixture.gpt(d, seed: MountFixture.seed &+ 4)
        let job = MountFixture.job(d, disk.image)
        let mp = d + "/mnt"
        backyMount(job, mp)
        guard let pid = MountFixture.servingPid(mp) else { return XCTFail("no .backy-mount") }
        XCTAssertEqual(MountFixture.pins(job).count, 2)
        XCTAssertEqual(kill(pid, SIGKILL), 0)
        XCTAssertTrue(MountFixture.eventually(10) { MountFixture.mounts(mp).isEmpty }, "\(MountFixture.mounts(mp))")
        XCTAssertTrue(MountFixture.eventually(10) { MountFixture.processes(mentioning: mp).isEmpty },
                      "\(MountFixture.processes(mentioning: mp))")
        // The pins stay until the next purge, like a dead session's.
        XCTAssertEqual(E2E.backy(["-b", job, "purge"]).code, 0)
        XCTAssertEqual(MountFixture.pins(job), [])
        // And the directory can be mounted again.
        backyMount(job, mp)
        assertSameFiles(disk.trees["part2"]!, mp + "/part2")

        // Watchdog and server both killed: the mount stays, dead; mount
        // refuses the point, umount removes the stale mount.
        guard let pid2 = MountFixture.servingPid(mp) else { return XCTFail("no .backy-mount") }
        let dogs = MountFixture.processes(mentioning: mp).filter(MountFixture.isWatchdog)
        XCTAssertEqual(dogs.count, 1, "\(dogs)")
        for dog in dogs { kill(Int32(dog.prefix { $0 != ":" })!, SIGKILL) }
        kill(pid2, SIGKILL)
        XCTAssertTrue(MountFixture.eventually(10) { MountFixture.processes(mentioning: mp).isEmpty },
                      "fuse2fs dies with its parent: \(MountFixture.processes(mentioning: mp))")
        XCTAssertEqual(MountFixture.mounts(mp).count, 3)
        let refused = E2E.backy(["-b", job, "mount", mp])
        XCTAssertEqual(refused.code, 1)
        XCTAssertTrue(refused.stderr.contains("already a mount point") && refused.stderr.contains("backy umount"), refused.stderr)
        let u = E2E.backy(["umount", mp])
        XCTAssertEqual(u.code, 0, u.stderr)
        XCTAssertTrue(u.out.contains("stale"), u.out)
        XCTAssertEqual(MountFixture.mounts(mp), [])
        XCTAssertEqual(E2E.backy(["-b", job, "purge"]).code, 0)
        XCTAssertEqual(MountFixture.pins(job), [])
    }

    func testBadInputIsOneErrorLine() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "mount-bad")
        let disk = MountFixture.bare(d, seed: MountFixture.seed &+ 5)
        let job = MountFixture.job(d, disk.image)
        _ = FileManager.default.createFile(atPath: d + "/file", contents: Data())
        for (args, code, text) in [
            (["-b", job, "mount", "-r", "nosuch", d + "/m1"], Int32(1), "unknown revision"),
            (["-b", job, "mount", d + "/file"], 1, "not a directory"),
            (["-b", d + "/nojob", "mount", d + "/m2"], 1, "does not exist"),
            (["-b", job, "mount"], 2, ""),
            (["umount", d + "/nothing-here"], 1, "does not exist"),
            (["umount", d], 1, "not mounted"),
        ] {
            let r = E2E.backy(args)
            XCTAssertEqual(r.code, code, "\(args): \(r.stderr)")
            if code == 1 {
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(args): \(r.stderr)")
                XCTAssertTrue(r.stderr.hasPrefix("Error: ") && r.stderr.contains(text), "\(args): \(r.stderr)")
            }
        }
        XCTAssertEqual(MountFixture.mounts(d), [])
        XCTAssertEqual(MountFixture.processes(mentioning: d), [])
    }

    /// An MBR disk with one XFS partition: not opened by default, mounted
    /// read-only through a loop device with --kernel, and nothing (mount,
    /// loop device) left after umount or kill -9; the drill runs xfs_repair.
    func testKernelMountOfXFS() throws {
        try MountFixture.require(Self.tools + ["mkfs.xfs", "xfs_repair", "losetup"])
        let d = E2E.tempDir(self, "mount-xfs")
        let t = d + "/tree"
        MountFixture.tree(t, seed: MountFixture.seed &+ 6)
        // The fixture is ours and trusted: the kernel fills it.
        MountFixture.sh("""
            set -e; cd \(d); truncate -s 330M x.img
            printf 'label: dos\\nstart=2048, size=320M, type=83\\n' | sfdisk -q x.img
            truncate -s 320M xp.img && mkfs.xfs -q -f xp.img
            mkdir fill && mount -o loop xp.img fill && cp -a tree/. fill/ && umount fill
            dd if=xp.img of=x.img bs=1M seek=1 conv=notrunc,sparse status=none
            """)
        let job = MountFixture.job(d, d + "/x.img")
        let mp = d + "/mnt"
        let plain = backyMount(job, mp)
        XCTAssertTrue(plain.out.contains("MBR partition table") && plain.out.contains("--kernel"), plain.out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: mp + "/part1"))
        XCTAssertEqual(E2E.backy(["umount", mp]).code, 0)

        let loopsBefore = E2E.run("/sbin/losetup", ["-a"]).out
        let k = backyMount(job, mp, ["--kernel"])
        XCTAssertTrue(k.out.contains("kernel xfs, read-only"), k.out)
        assertSameFiles(t, mp + "/part1")
        let info = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        XCTAssertTrue(info.split(separator: "\n").contains { $0.contains(" \(mp)/part1 ro,nosuid,nodev,noexec") }, info)
        XCTAssertEqual(E2E.backy(["umount", mp]).code, 0)
        XCTAssertEqual(MountFixture.mounts(mp), [])
        XCTAssertTrue(MountFixture.eventually(5) { E2E.run("/sbin/losetup", ["-a"]).out == loopsBefore }, "loop device left")

        backyMount(job, mp, ["--kernel"])
        guard let pid = MountFixture.servingPid(mp) else { return XCTFail("no .backy-mount") }
        kill(pid, SIGKILL)
        XCTAssertTrue(MountFixture.eventually(10) { MountFixture.mounts(mp).isEmpty })
        XCTAssertTrue(MountFixture.eventually(5) { E2E.run("/sbin/losetup", ["-a"]).out == loopsBefore }, "loop device left")

        let drill = E2E.backy(["-b", job, "drill"])
        XCTAssertEqual(drill.code, 0, drill.out + drill.stderr)
        XCTAssertTrue(drill.out.contains("xfs_repair -n"), drill.out)
        XCTAssertEqual(E2E.backy(["-b", job, "files", "--kernel", "/level0"]).code, 0)
        XCTAssertEqual(E2E.backy(["-b", job, "files", "/level0"]).code, 1)
    }

    /// A chunk file damaged after the backup: reads of the bytes it holds
    /// fail with EIO (never wrong data), the rest of the image reads fine,
    /// and the job log names the chunk.
    func testDamagedChunkReadsAsIOError() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "mount-badchunk")
        let disk = MountFixture.bare(d, seed: MountFixture.seed &+ 7)
        let job = MountFixture.job(d, disk.image)
        // The chunk holding bytes 4..8 MiB of the image (inside the 5 MiB file's data or metadata).
        let chunks = E2E.files(in: job + "/chunks", suffix: ".chunk").sorted()
        XCTAssertGreaterThan(chunks.count, 2)
        let victim = chunks[chunks.count / 2]
        var bytes = try Data(contentsOf: URL(fileURLWithPath: victim))
        bytes[bytes.count - 10] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: victim))
        let mp = d + "/mnt"
        backyMount(job, mp)
        let whole = E2E.run("/bin/cat", [mp + "/disk.raw"])
        XCTAssertNotEqual(whole.code, 0)
        XCTAssertTrue(whole.stderr.contains("Input/output error"), whole.stderr)
        // Byte-for-byte equal wherever it could read: cmp up to the error.
        let prefix = whole.stdout
        let img = try Data(contentsOf: URL(fileURLWithPath: disk.image))
        XCTAssertEqual(prefix, img.prefix(prefix.count), "bytes before the damaged chunk are the image's")
        XCTAssertEqual(prefix.count % (4 << 20), 0, "the error starts at a chunk boundary")
        let log = try String(contentsOfFile: job + "/backy.log", encoding: .utf8)
        XCTAssertTrue(log.contains("cannot be read"), log)
        XCTAssertEqual(E2E.backy(["umount", mp]).code, 0)
    }

    /// -f stays in the foreground; SIGTERM unmounts and exits 0.
    func testForegroundAndConfigJob() throws {
        try MountFixture.require(Self.tools)
        let d = E2E.tempDir(self, "mount-fg")
        let base = d + "/base"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let disk = MountFixture.bare(d, seed: MountFixture.seed &+ 8)
        _ = MountFixture.job(base, disk.image, name: "vm1")
        let conf = d + "/backy.conf"
        try """
            global:
                base-dir: \(base)
            schedules:
                default:
                    daily: {interval: 1d, keep: 3}
            jobs:
                vm1:
                    schedule: default
                    source: {type: file, filename: \(disk.image)}
            """.write(toFile: conf, atomically: true, encoding: .utf8)
        let mp = d + "/mnt"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: E2E.binary)
        p.arguments = ["mount", "-f", "-c", conf, "vm1", mp]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        XCTAssertTrue(MountFixture.eventually(20) { FileManager.default.fileExists(atPath: mp + "/disk/etc-fstab") })
        XCTAssertEqual(MountFixture.servingPid(mp), p.processIdentifier)
        assertSameFiles(disk.trees["disk"]!, mp + "/disk")
        p.terminate()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("Mounted revision ") && text.contains("disk/"), text)
        XCTAssertEqual(MountFixture.mounts(mp), [])
        XCTAssertEqual(MountFixture.pins(base + "/vm1"), [])
        // files/get/drill take -c CONFIG JOB too; an unknown job is one line.
        let ls = E2E.backy(["files", "-c", conf, "vm1", "/"])
        XCTAssertEqual(ls.code, 0, ls.stderr)
        XCTAssertTrue(ls.out.contains("etc-fstab"), ls.out)
        let none = E2E.backy(["files", "-c", conf, "vm9", "/"])
        XCTAssertEqual(none.code, 1)
        XCTAssertTrue(none.stderr.hasPrefix("Error: ") && none.stderr.contains("vm9"), none.stderr)
        XCTAssertEqual(E2E.backy(["drill", "-c", conf]).code, 2, "JOB missing is a usage error")
    }
}
