// Duration.swift — parsing of schedule interval strings (backy.conf.example;
// backy's `parse_duration`): an integer with suffix w/d/h/m/s, or a bare integer
// meaning seconds. A YAML integer (which crashed 2.4.3) is accepted by passing its
// text; zero, negative and malformed values are rejected with a descriptive error.

import Foundation

/// Why an interval string could not be parsed.
public struct DurationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The rejected input, verbatim.
    public let value: String
    /// What is wrong with it.
    public let reason: String

    public init(value: String, reason: String) {
        self.value = value
        self.reason = reason
    }

    public var description: String {
        "invalid interval \"\(value)\": \(reason)"
    }
}

/// The largest interval accepted: 2^32 − 1 s (about 136 years).
public let maxDurationSeconds = Int(UInt32.max)

/// Parses a backy interval: `<n>w`, `<n>d`, `<n>h`, `<n>m`, `<n>s` or a bare `<n>`
/// (seconds), n a positive decimal integer, the result at most `maxDurationSeconds`.
/// Surrounding whitespace (also before the suffix) is ignored and a leading `+` is accepted, like Python's
/// `int()`; suffixes are lower-case only, as in backy. Returns whole seconds.
///
/// Pass a YAML integer as its text (`"5"` → 5 s).
public func parseDuration(_ text: String) throws -> Int {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !trimmed.isEmpty else {
        throw DurationError(value: text, reason: "empty")
    }
    let multipliers: [Character: Int] = ["w": 7 * 24 * 3600, "d": 24 * 3600, "h": 3600, "m": 60, "s": 1]
    var digits = Substring(trimmed)
    var multiplier = 1
    if let last = digits.last, let factor = multipliers[last] {
        multiplier = factor
        digits = Substring(digits.dropLast().trimmingCharacters(in: .whitespaces))
    }
    if digits.first == "+" { digits = digits.dropFirst() }
    if digits.first == "-" {
        throw DurationError(value: text, reason: "must be positive")
    }
    guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
        throw DurationError(value: text, reason: "expected an integer optionally followed by w, d, h, m or s")
    }
    guard let count = Int(digits) else {
        throw DurationError(value: text, reason: "too large")
    }
    guard count > 0 else {
        throw DurationError(value: text, reason: "must be positive")
    }
    let (seconds, overflow) = count.multipliedReportingOverflow(by: multiplier)
    guard !overflow, seconds <= maxDurationSeconds else {
        throw DurationError(value: text, reason: "too large (at most \(maxDurationSeconds) s)")
    }
    return seconds
}
