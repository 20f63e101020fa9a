// Fuzz target chunkmap: a native revision's binary map `<id>.map`, read by
// ChunkMap.read (header checked against the file size before anything is
// allocated, checksum, digests) and ChunkMap.readHeader (status, damage
// checks). Each input is read twice: as it is, and with its checksum made
// right, so the fuzzer also reaches what comes after the checksum: the
// image reader's chunk lengths and offsets.
import ChunkStore
import FuzzSupport

enum Target {
    static let path = DirectoryBackend.path(of: .map(Fuzz.revisionID), jobPath: Fuzz.job.path)
}

/// The map's SHA-256 (header bytes 0..<32 and the digests) written at 32.
func sealed(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
    guard input.count >= ChunkMap.headerSize else { return nil }
    var out = Array(input)
    let covered = Array(input[0..<32]) + Array(input[ChunkMap.headerSize...])
    let sum = covered.withUnsafeBytes { ChunkHash.sha256($0) }
    out.withUnsafeMutableBytes { sum.store(to: $0.baseAddress! + 32) }
    return out
}

func readBack() {
    _ = try? ChunkMap.readHeader(path: Target.path)
    guard let map = try? ChunkMap.read(path: Target.path) else { return }
    let image = NativeImage(map: map, store: Fuzz.job.store)
    var total: UInt64 = 0
    for i in 0..<image.chunkCount {
        total += UInt64(image.length(of: i))
        _ = image.offset(of: i)
        _ = image.isZero(i)
    }
    Fuzz.check(total == map.imageSize, "chunk lengths add up to \(total), the image has \(map.imageSize) bytes")
    _ = map.distinctChunks
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        Fuzz.write(Target.path, input)
        readBack()
        if let s = sealed(input) {
            s.withUnsafeBytes { Fuzz.write(Target.path, $0) }
            readBack()
        }
    }
}

runFuzzer(fuzzOne)
