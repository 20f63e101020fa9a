// Fuzz target lzo: a backy 2.4 chunk file `chunks/<hh>/<hash>.chunk.lzo`
// (python-lzo's framing: 0xF0/0xF1, big-endian length, LZO1X stream), read
// by LegacyImage.readChunk as restore, verify, NBD and upgrade read it: size
// limit, frame length, safe decompression into a chunk buffer (or the spare
// one for a chunk longer than the image needs), MurmurHash3 against the
// name; and LZO.decompress into a buffer of exactly one chunk.
import ChunkStore
import FuzzSupport

enum Target {
    static let hash = "00b84440945d5bc0922f19a36f0dbbcf"
    static let store = Fuzz.job.store
    static let chunks = Fuzz.job.path + "/" + DirectoryChunks.directoryName
    static let path: String = {
        try! Posix.mkdirIfMissing(chunks + "/00")
        return chunks + "/00/" + hash + ".chunk.lzo"
    }()
    static let workspace = ChunkWorkspace()
    static let out = UnsafeMutableRawBufferPointer.allocate(byteCount: LegacyMap.chunkSize, alignment: 16)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size, setup: { _ = (Target.path, Target.workspace.spare, Target.out) }) { input in
        Fuzz.write(Target.path, input)
        let ws = Target.workspace
        for need in [LegacyMap.chunkSize, 512] {
            _ = try? LegacyImage.readChunk(hash: Target.hash, store: Target.store, into: ws.data, workspace: ws, need: need)
        }
        if let n = try? LZO.decompress(input, into: Target.out) {
            Fuzz.check(n <= Target.out.count, "LZO.decompress returned \(n) bytes")
        }
    }
}

runFuzzer(fuzzOne)
