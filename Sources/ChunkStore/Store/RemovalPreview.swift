// RemovalPreview: what removing some revisions would free, for the dry runs
// of `forget` and `expire`: the revisions' own files (.rev, map, backy 2.x
// image) and the chunks that only they use (the next purge removes those),
// with their bytes. Reads revision metadata and maps through the store
// (StoreBackend) and asks it for sizes; changes nothing.
import Foundation

public struct RemovalPreview: Equatable, Sendable {
    /// Chunk files no other revision uses (native and backy 2.x).
    public var chunks = 0
    /// Their bytes (file sizes).
    public var chunkBytes: Int64 = 0
    /// Bytes of the revisions' own files.
    public var fileBytes: Int64 = 0

    public init() {}

    public var totalBytes: Int64 { chunkBytes + fileBytes }

    /// What removing the revisions `ids` of `job` would free. A map that
    /// cannot be read keeps every chunk it might use out of the count for
    /// the other revisions' side (it is an error, as for purge).
    public static func compute(job: Job, removing ids: Set<String>) throws -> RemovalPreview {
        var p = RemovalPreview()
        let backend = job.backend
        var goneNative = Set<ChunkID>(), keptNative = Set<ChunkID>()
        var goneLegacy = Set<String>(), keptLegacy = Set<String>()
        for rev in try job.scan() {
            let removing = ids.contains(rev.id)
            if removing {
                for o in [StoreObjectName.revision(rev.id), .map(rev.id), .legacyData(rev.id)] {
                    p.fileBytes += backend.size(of: o) ?? 0
                }
            }
            switch rev.backend {
            case .native:
                guard backend.size(of: .map(rev.id)) != nil else { continue }
                let chunks = try backend.readMap(.map(rev.id)).distinctChunks
                if removing { goneNative.formUnion(chunks) } else { keptNative.formUnion(chunks) }
            case .legacyChunked:
                guard backend.size(of: .legacyData(rev.id)) != nil else { continue }
                let chunks = try backend.readLegacyMap(.legacyData(rev.id)).distinctChunks
                if removing { goneLegacy.formUnion(chunks) } else { keptLegacy.formUnion(chunks) }
            case .cowfile, .unknown:
                continue
            }
        }
        let chunks = job.store.chunks
        for id in goneNative.subtracting(keptNative) where !id.isZero {
            guard let size = chunks.size(of: .native(id)) else { continue }
            p.chunks += 1
            p.chunkBytes += size
        }
        for hash in goneLegacy.subtracting(keptLegacy) {
            guard let size = chunks.size(of: .legacy(hash)) else { continue }
            p.chunks += 1
            p.chunkBytes += size
        }
        return p
    }
}
