// RestoreTarget: what a restore may write over. Checked on the opened
// descriptor (its real path from /proc/self/fd and its identity), so no
// symlink, `..` or rename between check and write can redirect it: never a
// file inside a job directory (a `cd JOB && backy restore last` would write
// the image over the newest revision's map), never the job's own source,
// and an existing non-empty regular file only when forced. Block devices
// and stdout are not affected by the last rule.
import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct RestoreTargetPolicy: Sendable {
    /// The job directory (a real path): nothing inside it may be written.
    public var jobPath: String
    /// The job's source (a file or block device), if it has a local one.
    public var sourcePath: String?
    /// Overwrite an existing non-empty regular file.
    public var force: Bool

    public init(jobPath: String, sourcePath: String? = nil, force: Bool = false) {
        self.jobPath = jobPath
        self.sourcePath = sourcePath
        self.force = force
    }

    /// No restrictions (tests of the data path, stdout).
    public static let none = RestoreTargetPolicy(jobPath: "", force: true)

    func refuse(_ name: String, _ why: String) -> BackyError {
        BackyError(.usage, "refusing to restore to \(name): \(why)")
    }

    /// Checks the opened target `fd` (named `name` by the user). `created`:
    /// this restore created the file (it held nothing).
    func check(fd: Int32, name: String, created: Bool) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw BackyError.posix("cannot stat restore target \(name)") }
        let kind = st.st_mode & S_IFMT
        let real = RestoreTargetPolicy.pathOf(fd: fd) ?? Posix.resolve(name) ?? name
        try checkLocation(real, name: name)
        if !jobPath.isEmpty, kind == S_IFREG, st.st_nlink > 1, let other = RestoreTargetPolicy.hardLink(of: st, in: jobPath) {
            throw refuse(name, "it is a hard link of \(other) in the job directory")
        }
        if let src = sourcePath, let s = Posix.status(src) {
            let same = (kind == S_IFREG && (s.st_mode & S_IFMT) == S_IFREG && s.st_dev == st.st_dev && s.st_ino == st.st_ino)
                || (kind == S_IFBLK && (s.st_mode & S_IFMT) == S_IFBLK && s.st_rdev == st.st_rdev)
            if same { throw refuse(name, "it is the job's own source \(src)") }
        }
        if kind == S_IFREG && !created && st.st_size > 0 && !force {
            throw refuse(name, "it exists and holds \(st.st_size) bytes; give --force to overwrite it")
        }
    }

    /// Checks where `name` leads (following symlinks, also dangling ones)
    /// before anything is opened or created there: a restore through a
    /// symlink into a job directory must not even create an empty file
    /// (a backup beside it would take an empty chunk file for a chunk).
    public func checkBeforeOpening(_ name: String) throws {
        if let real = Posix.resolve(name) { try checkLocation(real, name: name) }
    }

    /// Refuses `real` (a real path) inside this job's directory or inside
    /// any backy job directory.
    func checkLocation(_ real: String, name: String) throws {
        if let j = DirectoryBackend.jobDirectory(containing: real, own: jobPath) {
            throw refuse(name, "it is \(real), inside the \(j.isOwn ? "" : "backy ")job directory \(j.path)")
        }
    }

    /// Checks where a best-effort restore may write its damage report
    /// (written by rename, so checked by path, before the restore starts):
    /// not into a job directory except as `restore-damage-*.json` directly
    /// in this job's, not over a non-empty file without --force.
    public func checkReport(path: String) throws {
        guard let real = Posix.resolve(path) else {
            throw BackyError(.usage, "damage report \(path): its directory does not exist")
        }
        let dir = (real as NSString).deletingLastPathComponent, name = (real as NSString).lastPathComponent
        let ownReport = dir == jobPath && name.hasPrefix("restore-damage-") && name.hasSuffix(".json")
        if !ownReport {
            if !jobPath.isEmpty && (real == jobPath || real.hasPrefix(jobPath + "/")) {
                throw BackyError(.usage, "refusing to write the damage report to \(path): it is \(real), inside the job directory \(jobPath) (name it restore-damage-….json there, or put it elsewhere)")
            }
            if let job = DirectoryBackend.enclosingJob(of: real) {
                throw BackyError(.usage, "refusing to write the damage report to \(path): it is inside the backy job directory \(job)")
            }
        }
        if let st = Posix.linkStatus(real) {
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                throw BackyError(.usage, "refusing to write the damage report to \(path): it exists and is not a regular file")
            }
            if st.st_size > 0 && !force {
                throw BackyError(.usage, "refusing to write the damage report to \(path): it exists and holds \(st.st_size) bytes; give --force to overwrite it")
            }
        }
    }

    /// The path the kernel has for an open descriptor.
    static func pathOf(fd: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/fd/\(fd)", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        let s = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return s.hasPrefix("/") && !s.hasSuffix(" (deleted)") ? s : nil
    }

    /// A file of the job's store that is the same inode as `st`.
    static func hardLink(of st: stat, in job: String) -> String? {
        DirectoryBackend.file(sameAs: st, jobPath: job)
    }
}
