// Fuzz target legacymap: backy 2.4's JSON chunk map `<id>` ({"mapping":
// {"0": "<32 hex>", …}, "size": N}), read by LegacyMap.read as restore,
// verify, purge and upgrade read it, then walked as an image (chunk
// count, lengths, zero chunks, chunk names).
import ChunkStore
import FuzzSupport

enum Target {
    static let path = DirectoryBackend.path(of: .legacyData(Fuzz.revisionID), jobPath: Fuzz.job.path)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        Fuzz.write(Target.path, input)
        guard let map = try? LegacyMap.parse(Array(input), path: Target.path) else { return }
        let image = LegacyImage(map: map, store: Fuzz.job.store)
        var total: UInt64 = 0
        for i in 0..<image.chunkCount {
            total += UInt64(image.length(of: i))
            _ = image.isZero(i)
            _ = image.chunkName(i)
        }
        Fuzz.check(total == map.size, "chunk lengths add up to \(total), the image has \(map.size) bytes")
        _ = map.distinctChunks
    }
}

runFuzzer(fuzzOne)
