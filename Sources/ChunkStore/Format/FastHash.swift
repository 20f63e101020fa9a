// FastHash: XXH64 (seed 0), written from the public xxHash specification,
// one-shot and streaming. The backup pass records it for every block it
// hashes with SHA-256; the verification pass re-reads the source and compares
// this cheap hash, so a mostly unchanged image is not run through SHA-256
// twice. Streaming lets both passes hash each slice of a chunk right after
// reading it, while it is still in the core's cache.

public enum FastHash {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 {
        (acc ^ round(0, v)) &* p1 &+ p4
    }

    public static func xxh64(_ buf: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var s = Stream(seed: seed)
        s.update(buf)
        return s.finish()
    }

    /// Incremental XXH64: any split of the input gives the one-shot value.
    public struct Stream {
        private var v1, v2, v3, v4: UInt64
        private let seed: UInt64
        private var total = 0
        /// Up to 31 bytes not yet consumed as a 32-byte stripe.
        private var pending: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        private var pendingCount = 0

        public init(seed: UInt64 = 0) {
            self.seed = seed
            v1 = seed &+ p1 &+ p2
            v2 = seed &+ p2
            v3 = seed
            v4 = seed &- p1
        }

        @inline(__always) private mutating func stripe(_ p: UnsafeRawPointer) {
            v1 = round(v1, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self)))
            v2 = round(v2, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            v3 = round(v3, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
            v4 = round(v4, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
        }

        public mutating func update(_ buf: UnsafeRawBufferPointer) {
            guard let p = buf.baseAddress, buf.count > 0 else { return }
            let n = buf.count
            total += n
            var i = 0
            if pendingCount > 0 {
                let take = min(32 - pendingCount, n)
                let at = pendingCount
                withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.advanced(by: at).copyMemory(from: p, byteCount: take) }
                pendingCount += take
                i = take
                if pendingCount < 32 { return }
                var block = pending
                withUnsafeBytes(of: &block) { stripe($0.baseAddress!) }
                pendingCount = 0
            }
            // Local copies keep the four lanes in registers.
            var a = v1, b = v2, c = v3, d = v4
            while i + 32 <= n {
                a = round(a, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                b = round(b, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)))
                c = round(c, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)))
                d = round(d, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)))
                i += 32
            }
            v1 = a; v2 = b; v3 = c; v4 = d
            if i < n {
                let rest = n - i
                withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.copyMemory(from: p + i, byteCount: rest) }
                pendingCount = rest
            }
        }

        public func finish() -> UInt64 {
            var h: UInt64
            if total >= 32 {
                h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
                h = merge(h, v1)
                h = merge(h, v2)
                h = merge(h, v3)
                h = merge(h, v4)
            } else {
                h = seed &+ p5
            }
            h = h &+ UInt64(total)
            var block = pending
            let n = pendingCount
            return withUnsafeBytes(of: &block) { raw -> UInt64 in
                let p = raw.baseAddress!
                var i = 0
                while i + 8 <= n {
                    h ^= round(0, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                    h = rotl(h, 27) &* p1 &+ p4
                    i += 8
                }
                if i + 4 <= n {
                    h ^= UInt64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self))) &* p1
                    h = rotl(h, 23) &* p2 &+ p3
                    i += 4
                }
                while i < n {
                    h ^= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) &* p5
                    h = rotl(h, 11) &* p1
                    i += 1
                }
                return avalanche(h)
            }
        }
    }

    @inline(__always) static func avalanche(_ x: UInt64) -> UInt64 {
        var h = x
        h ^= h >> 33
        h = h &* p2
        h ^= h >> 29
        h = h &* p3
        h ^= h >> 32
        return h
    }
}
