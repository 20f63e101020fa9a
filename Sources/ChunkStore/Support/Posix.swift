// Posix: thin throwing wrappers around the system calls the store relies on
// (open, pread/pwrite loops, fsync of files and directories, rename, unlink,
// typed directory listings, path resolution), so every failure carries the
// path and errno text; whole-file reads have a size limit per kind of file.
import Foundation
import Presentation
#if canImport(Glibc)
import Glibc
#endif

public enum Posix {
    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) throws -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        if fd < 0 { throw BackyError.posix("cannot open \(path)") }
        return fd
    }

    /// Reads up to `count` bytes at `offset`, retrying short reads; returns
    /// the number read (less than `count` only at end of file).
    /// O_DIRECT (Glibc hides it behind _GNU_SOURCE); its value differs by
    /// architecture.
    #if arch(arm64) || arch(arm)
    public static let oDirect: Int32 = 0o200000
    #else
    public static let oDirect: Int32 = 0o40000
    #endif
    /// O_TMPFILE (an unnamed file in a directory, linked in later).
    public static let oTmpfile: Int32 = 0o20000000 | O_DIRECTORY

    public static func preadFull(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int, _ offset: Int64, path: String) throws -> Int {
        var done = 0
        while done < count {
            let r = Glibc.pread(fd, buf + done, count - done, off_t(offset + Int64(done)))
            if r < 0 {
                if errno == EINTR { continue }
                throw BackyError.posix("cannot read \(path) at offset \(offset + Int64(done))")
            }
            if r == 0 { break }
            done += r
        }
        return done
    }

    public static func pwriteFull(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int, _ offset: Int64, path: String) throws {
        var done = 0
        while done < count {
            let r = Glibc.pwrite(fd, buf + done, count - done, off_t(offset + Int64(done)))
            if r < 0 {
                if errno == EINTR { continue }
                throw BackyError.posix("cannot write \(path) at offset \(offset + Int64(done))")
            }
            done += r
        }
    }

    /// Writes everything to a stream (pipe, terminal or file position).
    public static func writeFull(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int, path: String) throws {
        var done = 0
        while done < count {
            let r = Glibc.write(fd, buf + done, count - done)
            if r < 0 {
                if errno == EINTR { continue }
                throw BackyError.posix("cannot write \(path)")
            }
            done += r
        }
    }

    public static func fsync(_ fd: Int32, path: String) throws {
        if Glibc.fsync(fd) != 0 { throw BackyError.posix("cannot fsync \(path)") }
    }

    /// fsyncs a directory so that renames and unlinks in it are durable.
    public static func fsyncDirectory(_ path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw BackyError.posix("cannot open directory \(path)") }
        defer { close(fd) }
        if Glibc.fsync(fd) != 0 { throw BackyError.posix("cannot fsync directory \(path)") }
    }

    public static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) != 0 { throw BackyError.posix("cannot rename \(from) to \(to)") }
    }

    /// Removes a file; a missing file is not an error.
    public static func unlinkIfPresent(_ path: String) throws {
        if Glibc.unlink(path) != 0 && errno != ENOENT { throw BackyError.posix("cannot remove \(path)") }
    }

    /// stat(2) of a path (following symlinks); nil if it fails.
    public static func status(_ path: String) -> Glibc.stat? {
        var st = Glibc.stat()
        return fstatat(AT_FDCWD, path, &st, 0) == 0 ? st : nil
    }

    public static func exists(_ path: String) -> Bool {
        status(path) != nil
    }

    public static func isDirectory(_ path: String) -> Bool {
        guard let st = status(path) else { return false }
        return (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func mkdirIfMissing(_ path: String, _ mode: mode_t = 0o755) throws {
        if Glibc.mkdir(path, mode) != 0 && errno != EEXIST { throw BackyError.posix("cannot create directory \(path)") }
    }

    /// The directory part of `path`, as `dirname` minus its "." ("" for a
    /// bare name, "/" for "/x", "a" for "a//b/"). Foundation's
    /// `deletingLastPathComponent` traps on one-character names ("j", "a/").
    public static func parentDirectory(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "" }
        var parent = p[..<slash]
        while parent.count > 1 && parent.hasSuffix("/") { parent = parent.dropLast() }
        return parent.isEmpty ? "/" : String(parent)
    }

    public static func realpath(_ path: String) -> String? {
        guard let p = Glibc.realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Names in a directory, without "." and "..".
    public static func listDirectory(_ path: String) throws -> [String] {
        try listDirectoryTyped(path).map(\.name)
    }

    /// What a directory entry is, as far as it matters to the store.
    public enum EntryType: Sendable, Equatable { case file, directory, symlink, other }

    /// Names and types in a directory (lstat where readdir does not say),
    /// without "." and "..".
    public static func listDirectoryTyped(_ path: String) throws -> [(name: String, type: EntryType)] {
        guard let d = opendir(path) else { throw BackyError.posix("cannot list \(path)") }
        defer { closedir(d) }
        var out: [(name: String, type: EntryType)] = []
        while true {
            errno = 0
            guard let e = readdir(d) else {
                if errno != 0 { throw BackyError.posix("cannot list \(path)") }
                break
            }
            let name = withUnsafePointer(to: &e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            var type: EntryType
            switch Int32(e.pointee.d_type) {
            case Int32(DT_REG): type = .file
            case Int32(DT_DIR): type = .directory
            case Int32(DT_LNK): type = .symlink
            case Int32(DT_UNKNOWN):
                var st = Glibc.stat()
                if lstat(path + "/" + name, &st) != 0 {
                    if errno == ENOENT { continue }  // gone meanwhile
                    throw BackyError.posix("cannot stat \(path)/\(name)")
                }
                type = entryType(st.st_mode)
            default: type = .other
            }
            out.append((name, type))
        }
        return out
    }

    static func entryType(_ mode: mode_t) -> EntryType {
        switch mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .directory
        case S_IFLNK: return .symlink
        default: return .other
        }
    }

    /// lstat(2) of a path (not following a final symlink); nil if it fails.
    public static func linkStatus(_ path: String) -> Glibc.stat? {
        var st = Glibc.stat()
        return lstat(path, &st) == 0 ? st : nil
    }

    /// Where a path leads: the real path of what it names, following every
    /// symlink, also a dangling one, and for a name that does not exist yet
    /// the real path of its directory plus the name. nil if a directory on
    /// the way cannot be resolved.
    public static func resolve(_ path: String, cwd: String = FileManager.default.currentDirectoryPath) -> String? {
        var p = path.hasPrefix("/") ? path : cwd + "/" + path
        for _ in 0..<40 {
            if let r = realpath(p) { return r }
            // A dangling symlink: follow it by hand.
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(p, &buf, buf.count - 1)
            if n > 0 {
                let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                p = target.hasPrefix("/") ? target : parentDirectory(p) + "/" + target
                continue
            }
            let dir = (p as NSString).deletingLastPathComponent
            let name = (p as NSString).lastPathComponent
            guard let d = realpath(dir.isEmpty ? "/" : dir) else { return nil }
            if name == "." || name == ".." || name.isEmpty { return realpath(d + "/" + name) }
            return d == "/" ? "/" + name : d + "/" + name
        }
        return nil
    }

    /// The absolute path `path` would have once created: the real path of
    /// its longest existing part (symlinks and `..` resolved there), then
    /// the rest with `.` and `..` taken by name (`JOB/new/..` is JOB).
    public static func canonicalPath(_ path: String, cwd: String = FileManager.default.currentDirectoryPath) -> String {
        let p = path.hasPrefix("/") ? path : cwd + "/" + path
        if let r = resolve(p, cwd: cwd) { return r }
        var acc = "/"
        var existing = true
        for comp in p.split(separator: "/").map(String.init) where comp != "." {
            let next = acc == "/" ? "/" + comp : acc + "/" + comp
            if existing, let r = realpath(next) {
                acc = r
            } else if comp == ".." {
                acc = (acc as NSString).deletingLastPathComponent
                if acc.isEmpty { acc = "/" }
            } else {
                existing = false
                acc = next
            }
        }
        return acc
    }

    /// Size limits of files read whole (a hostile or damaged file fails
    /// with one line instead of filling memory).
    public enum Limit {
        /// `<id>.rev`, a job's `config`: a few hundred bytes when written
        /// by backy.
        public static let metadata = 64 << 10
        /// `backy.conf`, the scheduler's status file (1,000 jobs take
        /// about 300 KiB).
        public static let configuration = 16 << 20
        /// Chunk maps copied whole, backy 2.4 JSON maps (about 45 bytes per
        /// 4 MiB chunk: 64 TiB of image), the verified index.
        public static let map = 1 << 30
    }

    /// Reads a whole regular file of at most `limit` bytes. Refuses other
    /// file types (a FIFO would block, a device never end) with one line.
    public static func readFile(_ path: String, limit: Int) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY | O_NONBLOCK)
        defer { close(fd) }
        var st = Glibc.stat()
        if fstat(fd, &st) != 0 { throw BackyError.posix("cannot stat \(path)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw BackyError(.io, "\(path) is not a regular file")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        func tooLarge() -> BackyError {
            BackyError(.corrupt, "\(path) is larger than \(ByteFormat.flexible(Int64(limit))) (\(limit) bytes): not a file backy wrote")
        }
        if Int64(st.st_size) > Int64(limit) { throw tooLarge() }
        var out = [UInt8](repeating: 0, count: Int(st.st_size))
        let n = try out.withUnsafeMutableBytes { try preadFull(fd, $0.baseAddress!, $0.count, 0, path: path) }
        if n < out.count { out.removeLast(out.count - n) }
        // A file that grew while reading: read the rest (up to the limit).
        var extra = [UInt8](repeating: 0, count: 65536)
        var off = Int64(n)
        while true {
            let r = try extra.withUnsafeMutableBytes { try preadFull(fd, $0.baseAddress!, $0.count, off, path: path) }
            if r == 0 { break }
            if out.count + r > limit { throw tooLarge() }
            out.append(contentsOf: extra[0..<r])
            off += Int64(r)
        }
        return out
    }

    /// Writes a small file atomically and durably: temp file in the same
    /// directory, write, fsync, rename, fsync the directory.
    /// `crashPoint` is reached after the fsync, before the rename.
    public static func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o440, durable: Bool = true,
                                           crashPoint: CrashPoint? = nil) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var fd = try open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        do {
            try bytes.withUnsafeBytes { try pwriteFull(fd, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, $0.count, 0, path: tmp) }
            if fchmod(fd, mode) != 0 { throw BackyError.posix("cannot chmod \(tmp)") }
            if durable { try fsync(fd, path: tmp) }
            // Closed exactly once: a second close after a failed rename
            // could close a descriptor another thread opened meanwhile.
            let closing = fd
            fd = -1
            if close(closing) != 0 { throw BackyError.posix("cannot close \(tmp)") }
            if let crashPoint { CrashPoints.reached(crashPoint) }
            try rename(tmp, path)
        } catch {
            if fd >= 0 { close(fd) }
            Glibc.unlink(tmp)
            throw error
        }
        if durable { try fsyncDirectory(dir.isEmpty ? "." : dir) }
    }
}
