// Purger: `backy purge`. Removes chunk files that no revision map and no
// running session refers to, in batches decided under the exclusive gate,
// so it runs beside backups, restores and NBD sessions without waiting for
// them and without losing a chunk they rely on (docs/store-format.md).
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
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
        let cleaned = try PinSession.cleanDead(jobPath: job.path, store: job.store)
        result.removedTempFiles = cleaned.tempFiles
        result.deadSessions = cleaned.sessions
        // Candidates: every chunk file present now (native, and backy 2.4's
        // `.chunk.lzo`). Chunks written later are not candidates, so they
        // cannot be removed by this run.
        enum Candidate { case native(ChunkID), legacy(String, String) }
        var candidates: [Candidate] = []
        try job.store.list { entry in
            switch entry {
            case .chunk(let id): candidates.append(.native(id))
            case .other(let path):
                let name = (path as NSString).lastPathComponent
                if name.hasSuffix(".chunk.lzo"), name.utf8.count == 32 + 10 {
                    candidates.append(.legacy(String(name.prefix(32)), path))
                }
            case .temp: break
            }
        }
        let refs = References(job: job)
        let gate = Gate(jobPath: job.path)
        var index = 0
        while index < candidates.count {
            let end = min(candidates.count, index + batchSize)
            try gate.exclusive {
                let referenced = try refs.refresh()
                for c in candidates[index..<end] {
                    let p: String
                    switch c {
                    case .native(let id):
                        if referenced.native.contains(id) { result.keptChunks += 1; continue }
                        p = job.store.path(id)
                    case .legacy(let hash, let path):
                        if referenced.legacy.contains(hash) { result.keptChunks += 1; continue }
                        p = path
                    }
                    let size = Posix.status(p).map { Int64($0.st_size) } ?? 0
                    if unlink(p) == 0 {
                        result.removedChunks += 1
                        result.freedBytes += size
                    } else if errno != ENOENT {
                        throw BackyError.posix("cannot remove \(p)")
                    }
                }
            }
            index = end
        }
        log.info("Purged \(result.removedChunks) chunks (\(ByteFormat.flexible(result.freedBytes))), kept \(result.keptChunks); removed \(result.removedTempFiles) temp files of \(result.deadSessions) dead sessions")
        return result
    }
}
