// Hashing: SHA-256 of chunk bytes (swift-crypto, SHA-NI where the CPU has it),
// the all-zero test that runs before hashing so zero chunks cost nothing, and
// the digester that does both (plus XXH64) slice by slice as a chunk is read.
import Crypto
import Foundation

public enum ChunkHash {
    /// SHA-256 of the bytes; never returns the reserved zero id for data that
    /// is not all zeros (a digest of all zero bits does not occur in practice).
    public static func sha256(_ buf: UnsafeRawBufferPointer) -> ChunkID {
        let d = SHA256.hash(data: buf)
        return d.withUnsafeBytes { ChunkID(bytes: $0.baseAddress!) }
    }

    /// True if every byte is zero. Uses the C library's vectorised memcmp of
    /// the buffer against itself shifted by one byte.
    public static func isAllZero(_ buf: UnsafeRawBufferPointer) -> Bool {
        let n = buf.count
        if n == 0 { return true }
        let p = buf.baseAddress!
        // Quick rejections on a few words before the full scan.
        if p.load(as: UInt8.self) != 0 { return false }
        if n >= 64 {
            for off in stride(from: 0, to: 64, by: 8) where p.loadUnaligned(fromByteOffset: off, as: UInt64.self) != 0 {
                return false
            }
            if p.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) != 0 { return false }
        }
        return memcmp(p, p + 1, n - 1) == 0
    }

    /// The id a chunk with these bytes gets: `.zero` for all-zero bytes,
    /// otherwise its SHA-256.
    public static func id(of buf: UnsafeRawBufferPointer) -> ChunkID {
        isAllZero(buf) ? .zero : sha256(buf)
    }
}

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

    private static let zeros: UnsafeMutableRawBufferPointer = {
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
