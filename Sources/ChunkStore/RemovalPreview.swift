// RemovalPreview: what removing some revisions would free, for the dry runs
// of `forget` and `expire`: the revisions' own files (.rev, map, backy 2.x
// image) and the chunks that only they use (the next purge removes those),
// with their bytes. Reads revision files and maps only; changes nothing.
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
        var goneNative = Set<ChunkID>(), keptNative = Set<ChunkID>()
        var goneLegacy = Set<String>(), keptLegacy = Set<String>()
        for rev in try job.scan() {
            let removing = ids.contains(rev.id)
            if removing {
                for f in [job.revPath(rev.id), job.mapPath(rev.id), job.legacyImagePath(rev.id)] {
                    if let st = Posix.linkStatus(f) { p.fileBytes += Int64(st.st_size) }
                }
            }
            switch rev.backend {
            case .native:
                guard Posix.linkStatus(job.mapPath(rev.id)) != nil else { continue }
                let chunks = try ChunkMap.read(path: job.mapPath(rev.id)).distinctChunks
                if removing { goneNative.formUnion(chunks) } else { keptNative.formUnion(chunks) }
            case .legacyChunked:
                guard Posix.linkStatus(job.legacyImagePath(rev.id)) != nil else { continue }
                let chunks = try LegacyMap.read(path: job.legacyImagePath(rev.id)).distinctChunks
                if removing { goneLegacy.formUnion(chunks) } else { keptLegacy.formUnion(chunks) }
            case .cowfile, .unknown:
                continue
            }
        }
        for id in goneNative.subtracting(keptNative) where !id.isZero {
            guard let st = Posix.linkStatus(job.store.path(id)) else { continue }
            p.chunks += 1
            p.chunkBytes += Int64(st.st_size)
        }
        for hash in goneLegacy.subtracting(keptLegacy) {
            guard let st = Posix.linkStatus(LegacyMap.chunkPath(store: job.store, hash: hash)) else { continue }
            p.chunks += 1
            p.chunkBytes += Int64(st.st_size)
        }
        return p
    }
}
