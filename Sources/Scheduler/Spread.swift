// Spread.swift — backy 2.4's deterministic per-job spread (its `scheduler.py`): the MD5 of
// the job name, read as a 128-bit big-endian integer, seeds a CPython-compatible
// Mersenne Twister, and `randint(0, L)` (L = the schedule's largest interval in whole
// seconds) gives the job's offset on every schedule grid.

import Crypto
import Foundation

/// The spread (in seconds, 0...maxInterval) of a job, identical to backy 2.4's
/// `Job.spread`: `random.seed(int(md5(name).hexdigest(), 16)); random.randint(0, L)`.
///
/// - Parameters:
///   - jobName: the job name, hashed as UTF-8.
///   - maxInterval: L, the largest interval of the job's schedule in whole seconds (≥ 0).
public func spread(jobName: String, maxInterval: Int) -> Int {
    precondition(maxInterval >= 0, "spread needs a non-negative interval")
    let digest = Insecure.MD5.hash(data: Data(jobName.utf8))
    var generator = MersenneTwister(bigEndianSeed: Array(digest))
    return generator.randint(0, maxInterval)
}
