// StoreUsage: what a job's store holds and how well it is verified, for
// `status` (its summary line and `--json`'s `store`) and the metrics: chunk
// files (native and backy 2.x), their bytes, the disk space the whole job
// store takes, and the verification coverage from the verified index.
// Asks the store (StoreBackend) for listings and sizes, never for chunk
// contents.
import Foundation

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
        let chunks = job.store.chunks
        var all: [StoredChunk] = []
        try chunks.list(strict: false) { chunk in
            switch chunk {
            case .native(let id):
                ids.append(id)
                u.chunks += 1
            case .legacy:
                u.legacyChunks += 1
            }
            all.append(chunk)
        }
        u.storedBytes = chunks.sizes(of: all).reduce(Int64(0)) { $0 + ($1 ?? 0) }
        u.diskBytes = job.backend.spaceUsed()
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
        // Quarantined chunks: one report per chunk name.
        let reports = (try? job.backend.listQuarantineReports()) ?? []
        u.quarantined = Set(reports.map { String($0.prefix { $0 != "." }) }).count
        return u
    }
}
