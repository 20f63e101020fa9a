// ChunkID: the name of a chunk, the SHA-256 digest of its uncompressed bytes.
// Held as four big-endian 64-bit words so that hashing, comparing and sorting
// are cheap and the hex form sorts like the words. The all-zero digest is
// reserved for chunks whose bytes are all zero; such chunks have no file.

public struct ChunkID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var w0: UInt64
    public var w1: UInt64
    public var w2: UInt64
    public var w3: UInt64

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    /// The reserved id of an all-zero chunk (of any length).
    public static let zero = ChunkID(w0: 0, w1: 0, w2: 0, w3: 0)

    public var isZero: Bool { w0 == 0 && w1 == 0 && w2 == 0 && w3 == 0 }

    /// Reads 32 bytes (big-endian words) from `p`.
    public init(bytes p: UnsafeRawPointer) {
        w0 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        w1 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        w2 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        w3 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    public init<C: Collection>(bytes c: C) where C.Element == UInt8 {
        precondition(c.count == 32, "a chunk id has 32 bytes")
        let a = Array(c)
        self = a.withUnsafeBytes { ChunkID(bytes: $0.baseAddress!) }
    }

    /// Writes the 32 bytes to `p`.
    public func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: w0.bigEndian, toByteOffset: 0, as: UInt64.self)
        p.storeBytes(of: w1.bigEndian, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: w2.bigEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: w3.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    public var bytes: [UInt8] {
        var a = [UInt8](repeating: 0, count: 32)
        a.withUnsafeMutableBytes { store(to: $0.baseAddress!) }
        return a
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// 64 lowercase hex digits.
    public var hex: String {
        var out = [UInt8](repeating: 0, count: 64)
        var i = 0
        for w in [w0, w1, w2, w3] {
            var shift: UInt64 = 60
            for _ in 0..<16 {
                out[i] = ChunkID.hexDigits[Int((w >> shift) & 0xf)]
                i += 1
                if shift > 0 { shift -= 4 }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The first two hex digits: the chunk's subdirectory in the store.
    public var prefix: String {
        let b = Int(w0 >> 56)
        let d = ChunkID.hexDigits
        return String(decoding: [d[b >> 4], d[b & 0xf]], as: UTF8.self)
    }

    public var description: String { hex }

    /// Parses 64 hex digits (either case); nil otherwise.
    public init?(hex s: Substring) {
        let u = Array(s.utf8)
        guard u.count == 64 else { return nil }
        var words = [UInt64](repeating: 0, count: 4)
        for i in 0..<64 {
            let c = u[i]
            let v: UInt64
            switch c {
            case 48...57: v = UInt64(c - 48)
            case 97...102: v = UInt64(c - 87)
            case 65...70: v = UInt64(c - 55)
            default: return nil
            }
            words[i / 16] = (words[i / 16] << 4) | v
        }
        self.init(w0: words[0], w1: words[1], w2: words[2], w3: words[3])
    }

    public init?(hex s: String) { self.init(hex: Substring(s)) }

    public static func < (a: ChunkID, b: ChunkID) -> Bool {
        if a.w0 != b.w0 { return a.w0 < b.w0 }
        if a.w1 != b.w1 { return a.w1 < b.w1 }
        if a.w2 != b.w2 { return a.w2 < b.w2 }
        return a.w3 < b.w3
    }
}
