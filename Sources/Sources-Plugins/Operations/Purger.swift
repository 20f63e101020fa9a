// Purger: `backy purge`. Removes chunks that no revision map and no running
// session refers to, in batches decided under the exclusive gate, so it
// runs beside backups, restores and NBD sessions without waiting for them
// and without losing a chunk they rely on (docs/store-format.md, "Purge and
// concurrent sessions"). Acts only on a store that is provably the job's
// own, and deletes only the store's own chunks (ChunkRemover).
import ChunkStore
import Foundation
import Logging
import Presentation

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
        let chunks = job.store.chunks
        // Only in a store that is provably this job's own: a symlinked
        // chunks/ or subdirectory could be another job's (or anything).
        try chunks.checkOwnership()
        let cleaned = try job.backend.cleanDeadSessions()
        result.removedTempFiles = cleaned.tempFiles
        result.deadSessions = cleaned.sessions
        let candidates = try self.candidates()
        let refs = References(job: job)
        let gate = job.backend.makeGate()
        let remover = candidates.isEmpty ? nil : try chunks.makeRemover()
        var index = 0
        while index < candidates.count {
            let end = min(candidates.count, index + batchSize)
            try gate.exclusive {
                let referenced = try refs.refresh()
                var unreferenced: [StoredChunk] = []
                for c in candidates[index..<end] {
                    switch c {
                    case .native(let id):
                        if referenced.native.contains(id) { result.keptChunks += 1; continue }
                    case .legacy(let hash):
                        if referenced.legacy.contains(hash) { result.keptChunks += 1; continue }
                    }
                    unreferenced.append(c)
                }
                for size in try remover!.remove(unreferenced) {
                    guard let size else { continue }
                    result.removedChunks += 1
                    result.freedBytes += size
                }
            }
            index = end
        }
        log.debug("Purged \(result.removedChunks) chunks (\(ByteFormat.flexible(result.freedBytes))), kept \(result.keptChunks); removed \(result.removedTempFiles) temp files of \(result.deadSessions) dead sessions")
        return result
    }

    /// Every chunk present now (native, and backy 2.4's). Chunks written
    /// later are not candidates, so a run cannot remove them.
    func candidates() throws -> [StoredChunk] {
        var candidates: [StoredChunk] = []
        try job.store.chunks.list(strict: true) { candidates.append($0) }
        return candidates
    }

    /// `purge --dry-run`: what a purge would remove now (chunks no revision
    /// or running session refers to, and their bytes), changing nothing: no
    /// lock, gate or pin directory is created, no temp file removed.
    public func preview() throws -> Result {
        var result = Result()
        let chunks = job.store.chunks
        try chunks.checkOwnership()
        let referenced = try References(job: job).refresh()
        for c in try candidates() {
            switch c {
            case .native(let id):
                if referenced.native.contains(id) { result.keptChunks += 1; continue }
            case .legacy(let hash):
                if referenced.legacy.contains(hash) { result.keptChunks += 1; continue }
            }
            guard let size = chunks.size(of: c) else { continue }
            result.removedChunks += 1
            result.freedBytes += size
        }
        return result
    }
}
