// ChunkHash: SHA-256 of chunk bytes (swift-crypto, SHA-NI where the CPU has
// it), and the all-zero test that runs before hashing so zero chunks cost
// nothing.
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
