// MountSupport: fixtures for the mount, files/get and drill tests, built at
// test time with the real tools: a file tree (deep directories, files of
// awkward sizes across chunk edges, a symbolic link, set modes and times),
// a GPT disk with two ext4 partitions and a vfat one (sfdisk, mkfs.ext4 -d,
// mkfs.vfat + mcopy), an unpartitioned ext4 disk, and a GPT disk whose
// ext4 filesystems are damaged. Plus helpers to run `backy mount` and to
// see what is left of it (mounts, processes, pins).
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

enum MountFixture {
    /// The seed of the random file contents (BACKY_TEST_SEED to repeat a run).
    static let seed: UInt64 = {
        let s = UInt64(ProcessInfo.processInfo.environment["BACKY_TEST_SEED"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
        print("MountFixture seed \(s) (set BACKY_TEST_SEED to repeat)")
        return s
    }()

    static func sh(_ cmd: String, file: StaticString = #filePath, line: UInt = #line) {
        let r = E2E.run("/bin/sh", ["-c", cmd])
        XCTAssertEqual(r.code, 0, "\(cmd): \(r.out)\(r.stderr)", file: file, line: line)
    }

    static func require(_ tools: [String]) throws {
        for t in tools where E2E.run("/bin/sh", ["-c", "command -v \(t) || test -x /usr/sbin/\(t) || test -x /sbin/\(t)"]).code != 0 {
            throw E2E.unavailable("\(t) is not installed (scripts/install-deps)")
        }
        guard access("/dev/fuse", R_OK | W_OK) == 0 else { throw E2E.unavailable("/dev/fuse is not usable") }
    }

    /// A file tree under `dir`: a 12-level deep path, files of 0, 1, 4095,
    /// 4096, 1 MiB + 7 and 5 MiB + 3 bytes (the last crosses 4 MiB chunk
    /// edges), a symbolic link, a 0600 file and a fixed mtime.
    static func tree(_ dir: String, seed: UInt64) {
        let deep = dir + "/" + (0..<12).map { "level\($0)" }.joined(separator: "/")
        try! FileManager.default.createDirectory(atPath: deep, withIntermediateDirectories: true)
        let sizes = [0, 1, 4095, 4096, (1 << 20) + 7, (5 << 20) + 3]
        for (k, n) in sizes.enumerated() {
            let p = (k % 2 == 0 ? deep : dir) + "/file-\(n)"
            _ = FileManager.default.createFile(atPath: p, contents: Data(E2E.randomBytes(n, seed: seed &+ UInt64(k))))
        }
        _ = FileManager.default.createFile(atPath: dir + "/etc-fstab", contents: Data("UUID=x / ext4 defaults 0 1\n".utf8))
        chmod(dir + "/etc-fstab", 0o600)
        var t = [timespec(tv_sec: 1_500_000_000, tv_nsec: 0), timespec(tv_sec: 1_600_000_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, dir + "/etc-fstab", &t, 0)
        symlink("etc-fstab", dir + "/fstab-link")
    }

    /// Relative paths of every entry below `dir`, sorted.
    static func listing(_ dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).filter { !$0.hasPrefix("lost+found") }.sorted()
    }

    /// Relative paths of the regular files below `dir`.
    static func regularFiles(_ dir: String) -> [String] {
        listing(dir).filter { p in
            var st = stat()
            return lstat(dir + "/" + p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        }
    }

    struct Disk {
        var image: String
        /// Partition name → the directory its filesystem was made from.
        var trees: [String: String]
        /// Partition name → its image file as written into the disk.
        var partitionImages: [String: String]
    }

    /// GPT: part1 ext4 24 MiB, part2 ext4 16 MiB, part3 vfat 8 MiB, on a
    /// 56 MiB disk.
    static func gpt(_ d: String, seed: UInt64) -> Disk {
        let t1 = d + "/tree1", t2 = d + "/tree2", t3 = d + "/tree3"
        tree(t1, seed: seed)
        tree(t2, seed: seed &+ 100)
        try! FileManager.default.createDirectory(atPath: t3, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: t3 + "/EFI.BIN", contents: Data(E2E.randomBytes(70_000, seed: seed &+ 200)))
        let img = d + "/gpt.img"
        sh("""
            set -e; cd \(d); truncate -s 56M gpt.img
            printf 'label: gpt\\nstart=2048, size=24M, type=L\\nsize=16M, type=L\\nsize=8M, type=U\\n' | sfdisk -q gpt.img
            mkfs.ext4 -q -F -L root -d tree1 p1.img 24M
            mkfs.ext4 -q -F -d tree2 p2.img 16M
            mkfs.vfat -C p3.img 8192 >/dev/null && mcopy -i p3.img tree3/EFI.BIN ::EFI.BIN
            dd if=p1.img of=gpt.img bs=1M seek=1 conv=notrunc,sparse status=none
            dd if=p2.img of=gpt.img bs=1M seek=25 conv=notrunc,sparse status=none
            dd if=p3.img of=gpt.img bs=1M seek=41 conv=notrunc,sparse status=none
            """)
        return Disk(image: img, trees: ["part1": t1, "part2": t2, "part3": t3],
                    partitionImages: ["part1": d + "/p1.img", "part2": d + "/p2.img", "part3": d + "/p3.img"])
    }

    /// An ext4 filesystem on the whole disk (no partition table), 40 MiB.
    static func bare(_ d: String, seed: UInt64) -> Disk {
        let t = d + "/bare-tree"
        tree(t, seed: seed &+ 300)
        sh("mkfs.ext4 -q -F -d \(t) \(d)/bare.img 40M")
        return Disk(image: d + "/bare.img", trees: ["disk": t], partitionImages: [:])
    }

    /// The GPT disk with part2's superblock and inode table overwritten
    /// with random bytes (no filesystem recognizable there any more), and
    /// part1's first inode table overwritten (still an ext4 signature, but
    /// e2fsck finds its root directory gone).
    static func damaged(_ d: String, seed: UInt64) -> Disk {
        var disk = gpt(d, seed: seed)
        for (part, wipeSuper) in [("p2", true), ("p1", false)] {
            let p = d + "/\(part).img"
            let r = E2E.run("/bin/sh", ["-c", "dumpe2fs \(p) 2>/dev/null | grep -m1 'Inode table at' | sed 's/.*at \\([0-9]*\\)-.*/\\1/'"])
            let block = Int(r.out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            let bs = Int(E2E.run("/bin/sh", ["-c", "dumpe2fs -h \(p) 2>/dev/null | sed -n 's/^Block size: *//p'"]).out
                .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 1024
            XCTAssertGreaterThan(block, 0, "inode table of \(p)")
            E2E.write(p, E2E.randomBytes(64 * 1024, seed: seed &+ 400), at: UInt64(block * bs))
            if wipeSuper { E2E.write(p, E2E.randomBytes(1024, seed: seed &+ 401), at: 1024) }
        }
        sh("""
            set -e; cd \(d)
            dd if=p1.img of=gpt.img bs=1M seek=1 conv=notrunc status=none
            dd if=p2.img of=gpt.img bs=1M seek=25 conv=notrunc status=none
            """)
        disk.image = d + "/gpt.img"
        return disk
    }

    /// A job backed up from `image`; returns the job directory.
    static func job(_ d: String, _ image: String, name: String = "job") -> String {
        let job = d + "/" + name
        let i = E2E.backy(["-b", job, "init", "file", image])
        XCTAssertEqual(i.code, 0, i.stderr)
        let r = E2E.backy(["-b", job, "backup", "daily"])
        XCTAssertEqual(r.code, 0, r.stderr)
        return job
    }

    // MARK: what is left

    /// Mount points at or below `path`.
    static func mounts(_ path: String) -> [String] {
        let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { l -> String? in
            let f = l.split(separator: " ")
            guard f.count > 4 else { return nil }
            let m = String(f[4])
            return m == path || m.hasPrefix(path + "/") ? m : nil
        }
    }

    /// Live (not zombie) processes whose command line mentions `text`.
    static func processes(mentioning text: String) -> [String] {
        var out: [String] = []
        for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
            guard let cmd = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")), !cmd.isEmpty else { continue }
            let line = String(decoding: cmd.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            guard line.contains(text), Int32(pid) != getpid() else { continue }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            if let close = stat.lastIndex(of: ")"), stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z") { continue }
            out.append("\(pid): \(line)")
        }
        return out
    }

    /// Whether a `processes` line is a mount's watchdog (a fork of backy
    /// named backy-watchdog).
    static func isWatchdog(_ line: String) -> Bool {
        (try? String(contentsOfFile: "/proc/\(line.prefix { $0 != ":" })/comm", encoding: .utf8)) == "backy-watchdog\n"
    }

    /// The job's pin files (sessions and pinned maps), without the gate.
    static func pins(_ job: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: job + "/.pins")) ?? []).filter { $0 != "gate" }.sorted()
    }

    static func chunkFiles(_ job: String) -> Int { E2E.files(in: job + "/chunks", suffix: ".chunk").count }

    /// Waits up to `seconds` for `cond`.
    static func eventually(_ seconds: Double, _ cond: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if cond() { return true }
            usleep(20_000)
        }
        return cond()
    }

    /// The serving process of a mount (from its .backy-mount).
    static func servingPid(_ mp: String) -> Int32? {
        guard let d = try? Data(contentsOf: URL(fileURLWithPath: mp + "/.backy-mount")),
              let doc = try? JSONSerialization.jsonObject(with: d) as? [String: Any] else { return nil }
        return (doc["pid"] as? NSNumber)?.int32Value
    }
}

extension XCTestCase {
    /// `backy mount`s at `mp` (created), unmounted again at the end of the
    /// test whatever happens.
    @discardableResult
    func backyMount(_ job: String, _ mp: String, _ extra: [String] = [], file: StaticString = #filePath, line: UInt = #line) -> RunResult {
        addTeardownBlock {
            if !MountFixture.mounts(mp).isEmpty {
                E2E.backy(["umount", mp])
                if !MountFixture.mounts(mp).isEmpty { _ = E2E.run("/bin/sh", ["-c", "fusermount3 -uz \(mp) || umount -l \(mp)"]) }
            }
        }
        let r = E2E.backy(["-b", job, "mount"] + extra + [mp])
        XCTAssertEqual(r.code, 0, "mount: \(r.stderr)", file: file, line: line)
        return r
    }
}

/// A TMPDIR of the test's own, set for the test process (and so for the
/// backy it runs), so that the private mounts of `files`, `get` and `drill`
/// are told apart from those of anything else on the machine (another test
/// run, a leftover of a killed one). It is set with a trailing slash, as
/// many shells set it: backy must still find its private mount under the
/// kernel's canonical name.
final class PrivateTMPDIR {
    let path: String
    private let saved: String?

    init(_ name: String) {
        saved = ProcessInfo.processInfo.environment["TMPDIR"]
        var base = NSTemporaryDirectory()
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/\(name)-tmp.XXXXXX").utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        setenv("TMPDIR", path + "/", 1)
    }

    /// The prefix of this test's private mount directories.
    var mountPrefix: String { path + "/backy-mount." }

    /// True when no private mount of this test is mounted.
    var noMounts: Bool {
        !((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").contains(mountPrefix)
    }

    func restore() {
        if let saved { setenv("TMPDIR", saved, 1) } else { unsetenv("TMPDIR") }
        try? FileManager.default.removeItem(atPath: path)
    }
}
