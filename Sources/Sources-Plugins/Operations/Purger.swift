// Purger: `backy purge`. Removes chunk files that no revision map and no
// running session refers to, in batches decided under the exclusive gate,
// so it runs beside backups, restores and NBD sessions without waiting for
// them and without losing a chunk they rely on (docs/store-format.md). Acts
// only on a store that is provably the job's own (no symlinks in chunks/),
// deleting relative to directories opened without following symlinks.
import ChunkStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
import Presentation
#endif

public final class Purger {
    public struct Result: Sendable {
        public var removedChunks = 0
        public var freedBytes: Int64 = 0
        public var keptChunks = 0
        public var removedTempFiles = 0
        public var deadSessions = 0
    }

    public let job: Job
    public let log: Logger
    public let batchSize: Int

    public init(job: Job, log: Logger = Logger(label: "backy"), batchSize: Int = 1000) {
        self.job = job
        self.log = log
        self.batchSize = max(1, batchSize)
    }

    /// Runs a purge. The caller holds `.purge` exclusively.
    public func run() throws -> Result {
        var result = Result()
        // Only in a store that is provably this job's own: a symlinked
        // chunks/ or subdirectory could be another job's (or anything).
        try job.store.checkOwnership()
        let cleaned = try PinSession.cleanDead(jobPath: job.path, store: job.store)
        result.removedTempFiles = cleaned.tempFiles
        result.deadSessions = cleaned.sessions
        let candidates = try self.candidates()
        let refs = References(job: job)
        let gate = Gate(jobPath: job.path)
        let dirs = candidates.isEmpty ? nil : try StoreDirectories(root: job.store.root)
        var index = 0
        while index < candidates.count {
            let end = min(candidates.count, index + batchSize)
            try gate.exclusive {
                let referenced = try refs.refresh()
                for c in candidates[index..<end] {
                    let prefix: String, name: String
                    switch c {
                    case .native(let id):
                        if referenced.native.contains(id) { result.keptChunks += 1; continue }
                        prefix = id.prefix
                        name = id.hex + ChunkStore.suffix
                    case .legacy(let hash, let pfx, let n):
                        if referenced.legacy.contains(hash) { result.keptChunks += 1; continue }
                        prefix = pfx
                        name = n
                    }
                    if let size = try dirs!.remove(name, in: prefix) {
                        result.removedChunks += 1
                        result.freedBytes += size
                    }
                }
            }
            index = end
        }
        log.debug("Purged \(result.removedChunks) chunks (\(ByteFormat.flexible(result.freedBytes))), kept \(result.keptChunks); removed \(result.removedTempFiles) temp files of \(result.deadSessions) dead sessions")
        return result
    }

    /// A chunk file purge may remove.
    enum Candidate { case native(ChunkID), legacy(hash: String, prefix: String, name: String) }

    /// Every chunk file present now (native, and backy 2.4's `.chunk.lzo`).
    /// Chunks written later are not candidates, so a run cannot remove them.
    func candidates() throws -> [Candidate] {
        var candidates: [Candidate] = []
        try job.store.list(strict: true) { entry in
            switch entry {
            case .chunk(let id): candidates.append(.native(id))
            case .other(_, let prefix, let name):
                if name.hasSuffix(".chunk.lzo"), name.utf8.count == 32 + 10, name.hasPrefix(prefix) {
                    candidates.append(.legacy(hash: String(name.prefix(32)), prefix: prefix, name: name))
                }
            }
        }
        return candidates
    }

    /// `purge --dry-run`: what a purge would remove now (chunks no revision
    /// or running session refers to, and their bytes), changing nothing: no
    /// lock, gate or pin directory is created, no temp file removed.
    public func preview() throws -> Result {
        var result = Result()
        try job.store.checkOwnership()
        let referenced = try References(job: job).refresh()
        for c in try candidates() {
            let path: String
            switch c {
            case .native(let id):
                if referenced.native.contains(id) { result.keptChunks += 1; continue }
                path = job.store.path(id)
            case .legacy(let hash, let prefix, let name):
                if referenced.legacy.contains(hash) { result.keptChunks += 1; continue }
                path = job.store.directory(prefix: prefix) + "/" + name
            }
            guard let st = Posix.linkStatus(path) else { continue }
            result.removedChunks += 1
            result.freedBytes += Int64(st.st_size)
        }
        return result
    }
}

/// The store's directories opened without following symlinks, so that a
/// directory swapped for a symlink after the store was checked cannot
/// redirect a deletion (unlinkat relative to the opened directory).
final class StoreDirectories {
    private let rootFd: Int32
    private let root: String
    private var subFds: [String: Int32] = [:]

    init(root: String) throws {
        self.root = root
        rootFd = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if rootFd < 0 {
            if errno == ELOOP { throw ChunkStore.notOwn("\(root) is a symlink") }
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
            if errno == ELOOP || errno == ENOTDIR { throw ChunkStore.notOwn("\(root)/\(prefix) is not a directory") }
            throw BackyError.posix("cannot open \(root)/\(prefix)")
        }
        subFds[prefix] = fd
        return fd
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
            throw ChunkStore.notOwn("\(root)/\(prefix)/\(name) is not a regular file")
        }
        if unlinkat(dfd, name, 0) != 0 {
            if errno == ENOENT { return nil }
            throw BackyError.posix("cannot remove \(root)/\(prefix)/\(name)")
        }
        return Int64(st.st_size)
    }
}
