// StoreUsage: what a job's store holds and how well it is verified, for
// `status` (its summary line and `--json`'s `store`) and the metrics: chunk
// files (native and backy 2.x), their bytes, the disk space the whole job
// directory takes, and the verification coverage from the verified index.
// Reads only directory entries and inodes (lstat), never chunk contents.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct StoreUsage: Equatable, Sendable {
    /// Native chunk files.
    public var chunks = 0
    /// backy 2.x chunk files (`.chunk.lzo`).
    public var legacyChunks = 0
    /// Bytes in chunk files (their sizes: what the chunks take compressed).
    public var storedBytes: Int64 = 0
    /// Space allocated on disk for everything in the job directory
    /// (chunks, maps, revisions, logs, quarantine), like `du`.
    public var diskBytes: Int64 = 0
    /// Native chunks that `verify` has never read back.
    public var neverVerified = 0
    /// When the least and the most recently verified chunk were verified.
    public var oldestVerified: Date?
    public var newestVerified: Date?
    /// Chunks moved to quarantine (their reports).
    public var quarantined = 0

    public init() {}

    /// Share of native chunks verified at rest at least once, 0...100 (100
    /// for an empty store).
    public var verifiedPercent: Double {
        chunks == 0 ? 100 : Double(chunks - neverVerified) * 100 / Double(chunks)
    }

    /// Measures the job's store.
    public static func measure(_ job: Job) throws -> StoreUsage {
        var u = StoreUsage()
        var ids: [ChunkID] = []
        try job.store.list { entry in
            switch entry {
            case .chunk(let id):
                ids.append(id)
                u.chunks += 1
                if let st = Posix.linkStatus(job.store.path(id)) { u.storedBytes += Int64(st.st_size) }
            case .other(let path, _, let name):
                if name.hasSuffix(".chunk.lzo") {
                    u.legacyChunks += 1
                    if let st = Posix.linkStatus(path) { u.storedBytes += Int64(st.st_size) }
                }
            }
        }
        u.diskBytes = diskUse(job.path, depth: 3)
        let index = try VerifiedIndex.load(job)
        var oldest: UInt32 = .max, newest: UInt32 = 0
        for id in ids {
            let t = index.lastVerifiedSeconds(id)
            if t == 0 { u.neverVerified += 1; continue }
            oldest = min(oldest, t)
            newest = max(newest, t)
        }
        if newest > 0 {
            u.oldestVerified = Date(timeIntervalSince1970: Double(oldest))
            u.newestVerified = Date(timeIntervalSince1970: Double(newest))
        }
        u.quarantined = Quarantine.reported(job).count
        return u
    }

    /// Allocated bytes of a directory tree (symlinks are not followed; at
    /// most `depth` levels: a job directory is chunks/<xx>/<file>).
    static func diskUse(_ path: String, depth: Int) -> Int64 {
        guard let st = Posix.linkStatus(path) else { return 0 }
        var total = Int64(st.st_blocks) * 512
        guard Posix.entryType(st.st_mode) == .directory, depth > 0,
              let entries = try? Posix.listDirectoryTyped(path) else { return total }
        for e in entries {
            let p = path + "/" + e.name
            if e.type == .directory {
                total += diskUse(p, depth: depth - 1)
            } else if let s = Posix.linkStatus(p) {
                total += Int64(s.st_blocks) * 512
            }
        }
        return total
    }
}
