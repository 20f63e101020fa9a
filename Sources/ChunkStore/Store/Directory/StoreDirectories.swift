// StoreDirectories: purge's deletions in a job directory's chunk store. The
// store's directories are opened without following symlinks, so that a
// directory swapped for a symlink after the store was checked cannot
// redirect a deletion (unlinkat relative to the opened directory).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class StoreDirectories: ChunkRemover {
    private let rootFd: Int32
    private let root: String
    private var subFds: [String: Int32] = [:]

    init(chunks: DirectoryChunks) throws {
        root = chunks.root
        rootFd = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if rootFd < 0 {
            if errno == ELOOP { throw DirectoryChunks.notOwn("\(root) is a symlink") }
            throw BackyError.posix("cannot open \(root)")
        }
    }

    deinit {
        for fd in subFds.values { close(fd) }
        close(rootFd)
    }

    private func directory(_ prefix: String) throws -> Int32 {
        if let fd = subFds[prefix] { return fd }
        let fd = openat(rootFd, prefix, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            if errno == ELOOP || errno == ENOTDIR { throw DirectoryChunks.notOwn("\(root)/\(prefix) is not a directory") }
            throw BackyError.posix("cannot open \(root)/\(prefix)")
        }
        subFds[prefix] = fd
        return fd
    }

    func remove(_ chunk: StoredChunk) throws -> Int64? {
        switch chunk {
        case .native(let id): return try remove(id.hex + DirectoryChunks.suffix, in: id.prefix)
        case .legacy(let h): return try remove(h + DirectoryChunks.legacySuffix, in: String(h.prefix(2)))
        }
    }

    /// Removes one file (never a symlink's target: unlinkat removes the
    /// name). Returns its size, or nil if it was gone already.
    func remove(_ name: String, in prefix: String) throws -> Int64? {
        let dfd = try directory(prefix)
        var st = stat()
        if fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return nil }
            throw BackyError.posix("cannot stat \(root)/\(prefix)/\(name)")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw DirectoryChunks.notOwn("\(root)/\(prefix)/\(name) is not a regular file")
        }
        if unlinkat(dfd, name, 0) != 0 {
            if errno == ENOENT { return nil }
            throw BackyError.posix("cannot remove \(root)/\(prefix)/\(name)")
        }
        return Int64(st.st_size)
    }
}
