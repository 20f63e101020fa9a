// ChunkDigester: a chunk's id (SHA-256, or the zero id) and XXH64, computed
// slice by slice as the chunk is read, so each slice is hashed while it is
// still in the core's cache.
import Crypto
import Foundation

/// A chunk's id and XXH64, computed slice by slice as the chunk is read, so
/// each slice is hashed while it is still in the core's cache. Leading
/// all-zero slices cost only the zero test; the chunk is `.zero` if no slice
/// had data (its XXH64 is then not computed and reads as 0).
public struct ChunkDigester {
    private var sha = SHA256()
    private var fast = FastHash.Stream()
    private var zeroHead = 0
    private var data = false

    /// Slices of this size fit the per-core cache together with the hashes.
    public static let sliceSize = 256 * 1024

    // nonisolated(unsafe): filled with zeros once, in the lazy initializer (which Swift runs once); only ever read after.
    nonisolated(unsafe) private static let zeros: UnsafeMutableRawBufferPointer = {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: sliceSize, alignment: 64)
        b.initializeMemory(as: UInt8.self, repeating: 0)
        return b
    }()

    public init() {}

    public mutating func update(_ slice: UnsafeRawBufferPointer) {
        if !data {
            if ChunkHash.isAllZero(slice) {
                zeroHead += slice.count
                return
            }
            data = true
            var left = zeroHead
            while left > 0 {
                let n = min(left, ChunkDigester.sliceSize)
                let z = UnsafeRawBufferPointer(rebasing: ChunkDigester.zeros[0..<n])
                sha.update(bufferPointer: z)
                fast.update(z)
                left -= n
            }
        }
        sha.update(bufferPointer: slice)
        fast.update(slice)
    }

    /// The chunk's id (`.zero` for all-zero bytes) and XXH64 (0 for zero chunks).
    public func finish() -> (id: ChunkID, fast: UInt64) {
        if !data { return (.zero, 0) }
        let d = sha.finalize()
        return (d.withUnsafeBytes { ChunkID(bytes: $0.baseAddress!) }, fast.finish())
    }
}
