// DeadSessions: how the directory backend finds sessions that died (their
// pin file is no longer locked) and removes their pins, pinned maps and
// unfinished chunk files.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension PinSession {
    /// What `cleanDead` removed.
    public typealias Cleanup = SessionCleanup

    /// Whether `s` is a session id (16 lowercase hex digits).
    static func isSessionID<S: StringProtocol>(_ s: S) -> Bool {
        s.utf8.count == 16 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// Throws unless `path` is a real directory (or absent): cleaning up
    /// through a symlink would remove files somewhere else.
    static func requireRealDirectory(_ path: String) throws -> Bool {
        guard let st = Posix.linkStatus(path) else {
            if errno == ENOENT { return false }
            throw BackyError.posix("cannot stat \(path)")
        }
        guard Posix.entryType(st.st_mode) == .directory else {
            throw DirectoryChunks.notOwn("\(path) is \(Posix.entryType(st.st_mode) == .symlink ? "a symlink" : "not a directory")")
        }
        return true
    }

    /// Removes the pins and chunk temp files of sessions whose process is
    /// gone (their pin file is no longer locked). Safe while other sessions
    /// run: a live session's pin file is always locked. Only names of the
    /// pin and temp file schemes are touched, and never through a symlink.
    @discardableResult
    public static func cleanDead(jobPath: String, store: ChunkStore) throws -> Cleanup {
        var result = Cleanup()
        let dir = jobPath + "/" + directoryName
        var live = Set<Substring>()
        var dead = Set<Substring>()
        if try requireRealDirectory(dir) {
            let names = try Posix.listDirectory(dir)
            let now = Date().timeIntervalSince1970
            for name in names where name.hasSuffix(".pin") || name.hasSuffix(".new") {
                let sid = name.dropLast(4)
                guard isSessionID(sid) else { continue }
                let p = dir + "/" + name
                // A `.new` file is locked right after it is created; only an
                // old one can belong to a session that died in between.
                if name.hasSuffix(".new") {
                    guard let st = Posix.linkStatus(p), now - Double(st.st_mtim.tv_sec) > 60 else {
                        live.insert(sid)
                        continue
                    }
                }
                let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
                if fd < 0 {
                    if errno == ENOENT { continue }
                    throw BackyError.posix("cannot open pin file \(p)")
                }
                if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                    // Nobody holds it: the session is dead.
                    Glibc.unlink(p)
                    dead.insert(sid)
                    result.sessions += 1
                } else {
                    live.insert(sid)
                }
                Glibc.close(fd)
            }
            for name in names where name.hasSuffix(".map") {
                let parts = name.split(separator: ".", omittingEmptySubsequences: false)
                guard parts.count == 3, isSessionID(parts[0]), RevisionID.isWellFormed(String(parts[1])) else { continue }
                if !live.contains(parts[0]) { Glibc.unlink(dir + "/" + name) }
            }
        }
        // Unfinished chunk files of sessions that are not live. Checked
        // again per file: a session may have started after the scan.
        result.tempFiles = try store.chunks.removeUnfinished { sid in
            live.contains(Substring(sid)) || (Posix.exists(dir + "/" + sid + ".pin") && !dead.contains(Substring(sid)))
        }
        return result
    }
}
