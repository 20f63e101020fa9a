// Slack: how far the time and memory bounds that tests assert are widened.
// 1 normally; scripts/test-sanitized sets BACKY_TEST_SLACK for builds under
// AddressSanitizer or ThreadSanitizer, whose processes run several times
// slower and hold shadow memory (the bounds stay bounds, only wider).
import Foundation

public enum TestSlack {
    /// The factor (at least 1).
    public static let factor: Double = max(1, Double(ProcessInfo.processInfo.environment["BACKY_TEST_SLACK"] ?? "") ?? 1)

    /// A bound in seconds or bytes, widened by `factor`.
    public static func scaled(_ bound: Double) -> Double { bound * factor }
    public static func scaled(_ bound: Int) -> Int { Int(Double(bound) * factor) }
}
