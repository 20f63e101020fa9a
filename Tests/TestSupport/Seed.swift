// Seed: replayable randomness for tests. A test that draws random kill
// points, bit flips or offsets takes its generator from `TestSeed.rng`,
// which prints the seed; BACKY_TEST_SEED=N replays a run (with
// `swift test --filter` naming the test).
import Foundation

/// xorshift64*: small, fast, and the same sequence on every platform.
public struct XorShift: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    public mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

public enum TestSeed {
    /// The seed of this run: BACKY_TEST_SEED if set, else one from the clock.
    public static func value(_ environmentKey: String = "BACKY_TEST_SEED") -> UInt64 {
        if let s = ProcessInfo.processInfo.environment[environmentKey], let v = UInt64(s) { return v }
        return UInt64(Date().timeIntervalSince1970 * 1e6) % 1_000_000_007
    }

    /// A generator for test `name`, announcing its seed.
    public static func rng(_ name: String, environmentKey: String = "BACKY_TEST_SEED") -> XorShift {
        let seed = value(environmentKey)
        print("\(name): seed \(seed) (replay with \(environmentKey)=\(seed))")
        return XorShift(seed: seed)
    }
}
