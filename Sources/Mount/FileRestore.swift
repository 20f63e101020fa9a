// FileRestore: `backy files` and `backy get` without a mount the operator
// has to handle: the revision is mounted privately (a temporary directory of
// this process, the same machinery as `backy mount`, only the one volume
// asked for), the path is listed or copied out, and everything is unmounted
// again. PATH is "part1:/etc/fstab", "disk:/etc/fstab", or "/etc/fstab" when
// the revision holds exactly one readable filesystem. Copies keep mode
// (without set-user/group-ID bits: the files come from another machine) and
// modification time, recreate symbolic links, skip device nodes, FIFOs and
// sockets, and keep runs of zeros as holes.
import ChunkStore
import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum FileRestore {
    /// Splits "part1:/etc/fstab" into ("part1", "/etc/fstab").
    public static func parse(_ spec: String) -> (volume: String?, path: String) {
        if let colon = spec.firstIndex(of: ":") {
            let name = String(spec[..<colon])
            if name == "disk" || (name.hasPrefix("part") && Int(name.dropFirst(4)) != nil) {
                let rest = String(spec[spec.index(after: colon)...])
                return (name, rest.isEmpty ? "/" : rest)
            }
        }
        return (nil, spec)
    }

    /// The volume `name` names, or the only readable one. Throws a usage
    /// error that lists the candidates.
    public static func volume(_ name: String?, in layout: DiskLayout, kernel: Bool) throws -> Volume {
        if let name {
            guard let v = layout.volumes.first(where: { $0.name == name }) else {
                let names = layout.volumes.map { $0.name }.joined(separator: ", ")
                throw BackyError(.usage, "the revision has no \(name) (it has: \(names.isEmpty ? "nothing" : names))")
            }
            return v
        }
        let readable = layout.volumes.filter {
            if case .success = VolumeMount.plan($0, kernel: kernel) { return true }
            return false
        }
        if readable.count == 1 { return readable[0] }
        let all = layout.volumes.map { "\($0.name) \($0.type ?? "unknown")" }.joined(separator: ", ")
        if readable.isEmpty {
            throw BackyError(.usage, "the revision has no filesystem that can be read here (\(all))")
        }
        throw BackyError(.usage, "the revision has \(readable.count) filesystems (\(all)): name one, e.g. \(readable[0].name):/etc/fstab")
    }

    /// The path of `path` inside a volume mounted at `root`, with every
    /// symbolic link on the way resolved inside the volume (an absolute
    /// link target means the volume's root, ".." stops at it), so that no
    /// link in a backup can lead to the files of this machine. The last
    /// component is followed only with `followLast`.
    public static func resolve(root: String, _ path: String, followLast: Bool) throws -> String {
        var pending = path.split(separator: "/").map(String.init)
        var done: [String] = []
        var hops = 0
        while !pending.isEmpty {
            let c = pending.removeFirst()
            if c == "." || c.isEmpty { continue }
            if c == ".." {
                if !done.isEmpty { done.removeLast() }
                continue
            }
            let p = root + (done.isEmpty ? "" : "/" + done.joined(separator: "/")) + "/" + c
            var st = stat()
            guard lstat(p, &st) == 0 else {
                throw BackyError(.notFound, "\((["/"] + done + [c]).joined(separator: "/").replacingOccurrences(of: "//", with: "/")) does not exist in the revision")
            }
            if (st.st_mode & S_IFMT) == S_IFLNK && (!pending.isEmpty || followLast) {
                hops += 1
                guard hops <= 40, let target = readLink(p) else {
                    throw BackyError(.notFound, "\(path): too many levels of symbolic links")
                }
                if target.hasPrefix("/") { done = [] }
                pending = target.split(separator: "/").map(String.init) + pending
                continue
            }
            done.append(c)
        }
        return done.isEmpty ? root : root + "/" + done.joined(separator: "/")
    }

    // MARK: listing

    /// `ls -l`-like lines for a file, or for a directory's entries
    /// (mode, uid, gid, size, modification time in UTC, name; "-> target"
    /// for symbolic links).
    public static func list(_ path: String) throws -> [String] {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw BackyError.posix("cannot read \(path)") }
        var rows: [(stat, String)] = []
        let isDir = (st.st_mode & S_IFMT) == S_IFDIR
        if isDir {
            for name in try Posix.listDirectory(path).sorted() {
                var s = stat()
                if lstat(path + "/" + name, &s) == 0 { rows.append((s, name)) }
            }
        } else {
            rows.append((st, (path as NSString).lastPathComponent))
        }
        let sizeWidth = rows.map { String($0.0.st_size).count }.max() ?? 1
        let uidWidth = rows.map { String($0.0.st_uid).count }.max() ?? 1
        let gidWidth = rows.map { String($0.0.st_gid).count }.max() ?? 1
        return rows.map { s, name in
            var line = modeString(s.st_mode) + "  "
            line += pad(String(s.st_uid), uidWidth) + " " + pad(String(s.st_gid), gidWidth) + "  "
            line += pad(String(s.st_size), sizeWidth) + "  "
            line += Timestamp.formatSeconds(Date(timeIntervalSince1970: Double(s.st_mtim.tv_sec))) + "  "
            line += printable(name)
            if (s.st_mode & S_IFMT) == S_IFDIR { line += "/" }
            if (s.st_mode & S_IFMT) == S_IFLNK, let t = readLink(isDir ? path + "/" + name : path) {
                line += " -> " + printable(t)
            }
            return line
        }
    }

    static func pad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }

    /// Names are bytes from the backup: control characters are shown as '?'.
    static func printable(_ s: String) -> String {
        String(s.unicodeScalars.map { $0.value < 32 || $0.value == 127 ? "?" : Character($0) })
    }

    public static func modeString(_ m: mode_t) -> String {
        let type: Character
        switch m & S_IFMT {
        case S_IFDIR: type = "d"
        case S_IFLNK: type = "l"
        case S_IFCHR: type = "c"
        case S_IFBLK: type = "b"
        case S_IFIFO: type = "p"
        case S_IFSOCK: type = "s"
        default: type = "-"
        }
        var s: [Character] = [type]
        let bits: [(mode_t, Character)] = [(0o400, "r"), (0o200, "w"), (0o100, "x"), (0o040, "r"), (0o020, "w"),
                                           (0o010, "x"), (0o004, "r"), (0o002, "w"), (0o001, "x")]
        for (b, c) in bits { s.append(m & b != 0 ? c : "-") }
        if m & 0o4000 != 0 { s[3] = s[3] == "x" ? "s" : "S" }
        if m & 0o2000 != 0 { s[6] = s[6] == "x" ? "s" : "S" }
        if m & 0o1000 != 0 { s[9] = s[9] == "x" ? "t" : "T" }
        return String(s)
    }

    static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buf, 4096)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: copying

    public struct CopyReport: Sendable {
        public var files = 0
        public var directories = 0
        public var links = 0
        public var bytes: UInt64 = 0
        /// Special files not copied (paths).
        public var skipped: [String] = []
        /// Files that could not be read or written: (path, why).
        public var failed: [(String, String)] = []
    }

    /// Where `get` puts `source`: `dest` itself, or inside it if it is a
    /// directory; nil dest means the current directory. Refuses to replace
    /// anything that exists.
    /// Refuses the job directory `jobPath` and any other backy job
    /// directory too (where a file could pass for a chunk or a map).
    public static func destination(for source: String, dest: String?, jobPath: String? = nil) throws -> String {
        let base = (source as NSString).lastPathComponent
        var target = dest ?? "."
        if Posix.isDirectory(target) {
            guard !base.isEmpty, base != "/" else {
                throw BackyError(.usage, "name the destination of the whole filesystem (DEST), e.g. a new directory")
            }
            target += "/" + base
        }
        if Posix.status(target) != nil || Posix.exists(target) {
            throw BackyError(.usage, "\(target) exists; it is not overwritten (remove it or choose another DEST)")
        }
        var lst = stat()
        if lstat(target, &lst) == 0 { throw BackyError(.usage, "\(target) exists; it is not overwritten") }
        if let real = Posix.resolve(target),
           let j = DirectoryBackend.jobDirectory(containing: real, own: jobPath.flatMap { Posix.realpath($0) }) {
            throw BackyError(.usage, "refusing to copy to \(target): it is \(real), inside the \(j.isOwn ? "" : "backy ")job directory \(j.path)")
        }
        return target
    }

    /// Copies `source` (file, link or directory tree) to `target`, which
    /// must not exist. Problems with single files are collected in the
    /// report; the copy goes on.
    public static func copy(_ source: String, to target: String) throws -> CopyReport {
        var r = CopyReport()
        var st = stat()
        guard lstat(source, &st) == 0 else { throw BackyError.posix("cannot read \(source)") }
        try copyItem(source, st, to: target, report: &r, top: true)
        // One flush of the target filesystem instead of an fsync per file.
        let dir = Posix.parentDirectory(target)
        let fd = Glibc.open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = backy_syncfs(fd)
            Glibc.close(fd)
        }
        return r
    }

    private static func copyItem(_ src: String, _ st: stat, to dst: String, report r: inout CopyReport, top: Bool) throws {
        let mode = st.st_mode & 0o1777
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            do {
                try copyFile(src, st, to: dst)
                r.files += 1
                r.bytes += UInt64(st.st_size)
            } catch {
                if top { throw error }
                r.failed.append((src, "\(error)"))
            }
        case S_IFDIR:
            guard mkdir(dst, 0o700) == 0 else {
                let e = BackyError.posix("cannot create \(dst)")
                if top { throw e }
                r.failed.append((src, e.message))
                return
            }
            r.directories += 1
            let names: [String]
            do {
                names = try Posix.listDirectory(src).sorted()
            } catch {
                r.failed.append((src, "\(error)"))
                names = []
            }
            for name in names {
                var cst = stat()
                guard lstat(src + "/" + name, &cst) == 0 else {
                    r.failed.append((src + "/" + name, BackyError.posix("cannot read").message))
                    continue
                }
                try copyItem(src + "/" + name, cst, to: dst + "/" + name, report: &r, top: false)
            }
            // Mode and time last: adding entries changes the time, and a
            // read-only mode would have stopped them.
            chmod(dst, mode)
            setTimes(dst, st, follow: true)
        case S_IFLNK:
            guard let t = readLink(src), symlink(t, dst) == 0 else {
                let e = BackyError.posix("cannot recreate the link \(dst)")
                if top { throw e }
                r.failed.append((src, e.message))
                return
            }
            setTimes(dst, st, follow: false)
            r.links += 1
        default:
            if top { throw BackyError(.usage, "\(src) is a device, FIFO or socket: nothing to copy") }
            r.skipped.append(src)
        }
    }

    private static func setTimes(_ path: String, _ st: stat, follow: Bool) {
        var times = [st.st_atim, st.st_mtim]
        utimensat(AT_FDCWD, path, &times, follow ? 0 : AT_SYMLINK_NOFOLLOW)
    }

    /// Copies a regular file's bytes through a temporary name in the target
    /// directory, leaves all-zero 64 KiB blocks as holes, then sets mode and
    /// times and renames it into place.
    static func copyFile(_ src: String, _ st: stat, to dst: String) throws {
        let inFD = try Posix.open(src, O_RDONLY | O_NOFOLLOW)
        defer { Glibc.close(inFD) }
        let dir = Posix.parentDirectory(dst)
        let tmp = (dir.isEmpty ? "." : dir) + "/." + (dst as NSString).lastPathComponent + ".backy-get"
        let outFD = try Posix.open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        var ok = false
        defer {
            Glibc.close(outFD)
            if !ok { unlink(tmp) }
        }
        let size = 1 << 20
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer { buf.deallocate() }
        var pos: Int64 = 0
        while true {
            let n = try Posix.preadFull(inFD, buf.baseAddress!, size, pos, path: src)
            if n == 0 { break }
            var k = 0
            while k < n {
                let m = min(65536, n - k)
                if !isZero(buf.baseAddress! + k, m) {
                    try Posix.pwriteFull(outFD, buf.baseAddress! + k, m, pos + Int64(k), path: tmp)
                }
                k += m
            }
            pos += Int64(n)
            if n < size { break }
        }
        guard ftruncate(outFD, off_t(pos)) == 0 else { throw BackyError.posix("cannot size \(tmp)") }
        fchmod(outFD, st.st_mode & 0o1777)
        var times = [st.st_atim, st.st_mtim]
        futimens(outFD, &times)
        try Posix.rename(tmp, dst)
        ok = true
    }

    static func isZero(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        let words = n / 8
        let w = p.assumingMemoryBound(to: UInt64.self)
        for i in 0..<words where w[i] != 0 { return false }
        for i in (words * 8)..<n where p.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
        return true
    }

    /// Writes a regular file's bytes to stdout (`src` resolved by `resolve`).
    public static func cat(_ src: String) throws -> UInt64 {
        var st = stat()
        guard lstat(src, &st) == 0 else { throw BackyError.posix("cannot read \(src)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw BackyError(.usage, "\(src) is not a regular file (only files go to stdout)") }
        let fd = try Posix.open(src, O_RDONLY | O_NOFOLLOW)
        defer { Glibc.close(fd) }
        let size = 1 << 20
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer { buf.deallocate() }
        var pos: Int64 = 0
        while true {
            let n = try Posix.preadFull(fd, buf.baseAddress!, size, pos, path: src)
            if n == 0 { break }
            try Posix.writeFull(1, buf.baseAddress!, n, path: "stdout")
            pos += Int64(n)
        }
        return UInt64(pos)
    }
}
