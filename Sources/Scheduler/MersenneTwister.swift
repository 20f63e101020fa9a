// MersenneTwister.swift — MT19937 pseudo-random generator, bit-for-bit compatible with
// CPython's `random.Random` for what backy's spread needs: `random.seed(int)` (via
// `init_by_array`), `getrandbits(k)` and `randint(a, b)` / `_randbelow(n)`.
// Used to reproduce backy 2.4's per-job spread (Spread) exactly.

import Foundation

/// MT19937 seeded the way CPython's `random.seed(int)` seeds it.
///
/// A value type: copying a generator copies its state.
public struct MersenneTwister: Sendable {
    private static let n = 624
    private static let m = 397
    private static let matrixA: UInt32 = 0x9908_b0df
    private static let upperMask: UInt32 = 0x8000_0000
    private static let lowerMask: UInt32 = 0x7fff_ffff

    private var mt: [UInt32]
    private var index: Int

    /// Seeds like CPython's `init_by_array(key)` (which itself starts with
    /// `init_genrand(19650218)`). `key` holds 32-bit words, least significant first.
    /// An empty key is treated as `[0]`, as CPython does for the seed 0.
    public init(key: [UInt32]) {
        mt = [UInt32](repeating: 0, count: Self.n)
        index = Self.n
        initGenrand(19_650_218)
        let key = key.isEmpty ? [0] : key
        var i = 1
        var j = 0
        for _ in 0..<max(Self.n, key.count) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30)
            mt[i] = (mt[i] ^ (prev &* 1_664_525)) &+ key[j] &+ UInt32(truncatingIfNeeded: j)
            i += 1
            j += 1
            if i >= Self.n { mt[0] = mt[Self.n - 1]; i = 1 }
            if j >= key.count { j = 0 }
        }
        for _ in 0..<(Self.n - 1) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30)
            mt[i] = (mt[i] ^ (prev &* 1_566_083_941)) &- UInt32(truncatingIfNeeded: i)
            i += 1
            if i >= Self.n { mt[0] = mt[Self.n - 1]; i = 1 }
        }
        mt[0] = 0x8000_0000
    }

    /// CPython `random.seed(n)` for a non-negative integer given as big-endian bytes
    /// (e.g. an MD5 digest read as a 128-bit big-endian integer). The absolute value is
    /// split into 32-bit words, least significant first; leading (most significant) zero
    /// words are dropped, exactly as CPython sizes the key by the integer's bit length.
    public init(bigEndianSeed bytes: [UInt8]) {
        var words: [UInt32] = []
        var end = bytes.count
        while end > 0 {
            let start = max(0, end - 4)
            var w: UInt32 = 0
            for b in bytes[start..<end] { w = (w << 8) | UInt32(b) }
            words.append(w)
            end = start
        }
        while words.count > 1, words.last == 0 { words.removeLast() }
        self.init(key: words)
    }

    /// CPython `random.seed(n)` for an integer seed (its absolute value is used).
    public init(seed: Int64) {
        let magnitude = seed.magnitude
        var words = [UInt32(truncatingIfNeeded: magnitude), UInt32(truncatingIfNeeded: magnitude >> 32)]
        if words[1] == 0 { words.removeLast() }
        self.init(key: words)
    }

    private mutating func initGenrand(_ s: UInt32) {
        mt[0] = s
        for i in 1..<Self.n {
            mt[i] = 1_812_433_253 &* (mt[i - 1] ^ (mt[i - 1] >> 30)) &+ UInt32(i)
        }
        index = Self.n
    }

    private mutating func twist() {
        for k in 0..<Self.n {
            let y = (mt[k] & Self.upperMask) | (mt[(k + 1) % Self.n] & Self.lowerMask)
            var v = mt[(k + Self.m) % Self.n] ^ (y >> 1)
            if y & 1 != 0 { v ^= Self.matrixA }
            mt[k] = v
        }
        index = 0
    }

    /// The next raw 32-bit output (`genrand_uint32`, i.e. `getrandbits(32)`).
    public mutating func next32() -> UInt32 {
        if index >= Self.n { twist() }
        var y = mt[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// CPython `getrandbits(k)` for 0 ≤ k ≤ 64: 32-bit words are filled least
    /// significant first; the last (partial) word keeps its top bits.
    public mutating func getrandbits(_ k: Int) -> UInt64 {
        precondition(k >= 0 && k <= 64, "getrandbits supports 0...64 bits")
        if k == 0 { return 0 }
        if k <= 32 { return UInt64(next32() >> UInt32(32 - k)) }
        var result: UInt64 = 0
        var remaining = k
        var shift: UInt64 = 0
        while remaining > 0 {
            var r = next32()
            if remaining < 32 { r >>= UInt32(32 - remaining) }
            result |= UInt64(r) << shift
            shift += 32
            remaining -= 32
        }
        return result
    }

    /// CPython `_randbelow_with_getrandbits(n)`: k = bit length of n; draw
    /// `getrandbits(k)` until the value is < n. Requires n ≥ 1.
    public mutating func randbelow(_ n: UInt64) -> UInt64 {
        precondition(n >= 1, "randbelow needs n >= 1")
        let k = 64 - n.leadingZeroBitCount
        var r = getrandbits(k)
        while r >= n { r = getrandbits(k) }
        return r
    }

    /// CPython `randint(a, b)`: a + randbelow(b − a + 1), inclusive at both ends.
    /// Requires a ≤ b and b − a < 2^63.
    public mutating func randint(_ a: Int, _ b: Int) -> Int {
        precondition(a <= b, "randint needs a <= b")
        let width = UInt64(b - a) + 1
        return a + Int(randbelow(width))
    }
}
