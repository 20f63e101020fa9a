// MurmurHash3: the x64 128-bit variant with seed 0 that backy 2.4 names its
// chunks with (the `mmh3` package: h1 then h2, each little-endian, as 32
// lowercase hex digits). Written from the public algorithm description.

public enum MurmurHash3 {
    static let c1: UInt64 = 0x87c3_7b91_1142_53d5
    static let c2: UInt64 = 0x4cf5_ad43_2745_937f

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) static func fmix(_ k0: UInt64) -> UInt64 {
        var k = k0
        k ^= k >> 33
        k = k &* 0xff51_afd7_ed55_8ccd
        k ^= k >> 33
        k = k &* 0xc4ce_b9fe_1a85_ec53
        k ^= k >> 33
        return k
    }

    /// (h1, h2) of the bytes.
    public static func x64_128(_ buf: UnsafeRawBufferPointer, seed: UInt64 = 0) -> (UInt64, UInt64) {
        let n = buf.count
        var h1 = seed, h2 = seed
        let p = buf.baseAddress
        let blocks = n / 16
        for b in 0..<blocks {
            var k1 = UInt64(littleEndian: p!.loadUnaligned(fromByteOffset: b * 16, as: UInt64.self))
            var k2 = UInt64(littleEndian: p!.loadUnaligned(fromByteOffset: b * 16 + 8, as: UInt64.self))
            k1 = k1 &* c1; k1 = rotl(k1, 31); k1 = k1 &* c2; h1 ^= k1
            h1 = rotl(h1, 27); h1 = h1 &+ h2; h1 = h1 &* 5 &+ 0x52dc_e729
            k2 = k2 &* c2; k2 = rotl(k2, 33); k2 = k2 &* c1; h2 ^= k2
            h2 = rotl(h2, 31); h2 = h2 &+ h1; h2 = h2 &* 5 &+ 0x3849_5ab5
        }
        let tail = blocks * 16
        let rem = n & 15
        var k1: UInt64 = 0, k2: UInt64 = 0
        if rem > 8 {
            for i in stride(from: rem - 1, through: 8, by: -1) {
                k2 ^= UInt64(p!.load(fromByteOffset: tail + i, as: UInt8.self)) << (UInt64(i - 8) * 8)
            }
            k2 = k2 &* c2; k2 = rotl(k2, 33); k2 = k2 &* c1; h2 ^= k2
        }
        if rem > 0 {
            for i in stride(from: min(rem, 8) - 1, through: 0, by: -1) {
                k1 ^= UInt64(p!.load(fromByteOffset: tail + i, as: UInt8.self)) << (UInt64(i) * 8)
            }
            k1 = k1 &* c1; k1 = rotl(k1, 31); k1 = k1 &* c2; h1 ^= k1
        }
        h1 ^= UInt64(n); h2 ^= UInt64(n)
        h1 = h1 &+ h2; h2 = h2 &+ h1
        h1 = fmix(h1); h2 = fmix(h2)
        h1 = h1 &+ h2; h2 = h2 &+ h1
        return (h1, h2)
    }

    /// 32 lowercase hex digits: h1 and h2 as little-endian bytes.
    public static func hex(_ buf: UnsafeRawBufferPointer) -> String {
        let (h1, h2) = x64_128(buf)
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(32)
        for h in [h1, h2] {
            for i in 0..<8 {
                let byte = Int((h >> (UInt64(i) * 8)) & 0xff)
                out.append(digits[byte >> 4])
                out.append(digits[byte & 0xf])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
