// Fuzz target chunkfile: a native chunk file (16-byte header, zstd or raw
// payload) read by ChunkStore.read, as restore, verify and the NBD server
// read it: header checks, lengths against the file size, decompression into
// a chunk-sized buffer, SHA-256 against the file's name.
import ChunkStore
import FuzzSupport

enum Target {
    static let store = Fuzz.job.store
    static let workspace = ChunkWorkspace()
    /// The file name: a real chunk id (the input will rarely hash to it).
    static let id = ChunkID(hex: "8c2a9c0e0b6b3f4b5d1e1f7a6a1c2b3d4e5f60718293a4b5c6d7e8f901234567")!
    /// A map's chunk may be shorter than 4 MiB: the smallest chunk size.
    static let small = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 16)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size, setup: { _ = (Target.store, Target.workspace, Target.small) }) { input in
        Fuzz.write(Target.store.path(Target.id), input)
        _ = try? Target.store.read(Target.id, workspace: Target.workspace)
        _ = try? Target.store.read(Target.id, into: Target.workspace.data, workspace: Target.workspace, checkHash: false)
        _ = try? Target.store.read(Target.id, into: Target.small, workspace: Target.workspace, checkHash: false)
    }
}

runFuzzer(fuzzOne)
