// RadosStall: when an operation of this process last timed out (an OSD or
// monitor that does not answer: down, stopped, partitioned). Best-effort
// clean-up after a failure — releasing locks, removing a session's pins or
// an incomplete revision — is skipped for a while after a timeout: each of
// those operations would wait out its own timeout too, and none is needed
// (locks lapse after their duration, a dead session's pins and an
// incomplete revision are removed by the next purge or backup). So a
// command facing a stalled cluster fails within about one operation
// timeout, with one error line. Process-wide: RadosError notes every
// ETIMEDOUT it is made from.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum RadosStall {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var last: Double?

    static func note() {
        let now = LeaseClock.now()
        lock.lock(); last = now; lock.unlock()
    }

    /// Whether an operation timed out within the last `seconds`.
    public static func recent(within seconds: Double) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard let t = last else { return false }
        return LeaseClock.now() - t < seconds
    }
}
