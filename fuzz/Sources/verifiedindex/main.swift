// Fuzz target verifiedindex: a job's `verified` file (magic, count, then
// 12 bytes per chunk), read by VerifiedIndex.load as verify --sample and
// status read it, then queried and rewritten.
import ChunkStore
import FuzzSupport
import Foundation

enum Target {
    static let path = VerifiedIndex.path(Fuzz.job)
    static let ids = [ChunkID.zero, ChunkID(w0: 1, w1: 2, w2: 3, w3: 4), ChunkID(w0: .max, w1: 0, w2: 0, w3: 0)]
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        Fuzz.write(Target.path, input)
        guard var index = try? VerifiedIndex.load(Fuzz.job) else { return }
        for id in Target.ids { _ = index.lastVerifiedSeconds(id) }
        index.record(Target.ids, at: Date(timeIntervalSince1970: 1e12))
        index.prune(keeping: Set(Target.ids))
        Fuzz.check(index.count <= Target.ids.count, "prune kept \(index.count) entries")
    }
}

runFuzzer(fuzzOne)
