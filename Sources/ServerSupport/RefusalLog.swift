// RefusalLog: logs refused connections once per burst instead of once per
// connection. The first refusal of a burst is logged with its reason and
// peer; later ones are only counted, and one summary line ("refused N more
// connections ...") follows when the burst is over (no refusal for `quiet`
// seconds) or every `interval` seconds while it lasts. So a flood of
// connections cannot flood the log.
import Dispatch
import Foundation
import Logging

// @unchecked Sendable: the burst counters are read and changed only under `lock`; the summary line is written from `queue`.
public final class RefusalLog: @unchecked Sendable {
    private let log: Logger
    private let what: String
    private let quiet: TimeInterval
    private let interval: TimeInterval
    private let lock = NSLock()
    private let queue = DispatchQueue(label: "backy-refusal-log")
    private var inBurst = false
    private var counted = 0
    private var total = 0
    private var lastRefusal = Date.distantPast
    private var lastSummary = Date.distantPast
    private var reasons: [String: Int] = [:]

    /// `what` names the server in the log lines ("NBD server", "console").
    public init(log: Logger, what: String, quiet: TimeInterval = 5, interval: TimeInterval = 60) {
        self.log = log
        self.what = what
        self.quiet = quiet
        self.interval = interval
    }

    /// Refusals so far (for tests and the stop message).
    public var refusals: Int {
        lock.lock(); defer { lock.unlock() }
        return total
    }

    /// Records one refused connection.
    public func refused(peer: String, reason: String) {
        let now = Date()
        lock.lock()
        total += 1
        lastRefusal = now
        if !inBurst {
            inBurst = true
            lastSummary = now
            lock.unlock()
            log.warning("\(what): refused a connection from \(peer): \(reason); further refusals are counted and summarised")
            schedule(after: quiet)
            return
        }
        counted += 1
        reasons[reason, default: 0] += 1
        lock.unlock()
    }

    private func schedule(after seconds: TimeInterval) {
        queue.asyncAfter(deadline: .now() + seconds) { [self] in check() }
    }

    private func check() {
        let now = Date()
        lock.lock()
        let over = now.timeIntervalSince(lastRefusal) >= quiet
        let due = now.timeIntervalSince(lastSummary) >= interval
        var line: String?
        if (over || due) && counted > 0 {
            let why = reasons.sorted { $0.value > $1.value }.map { "\($0.value) × \($0.key)" }.joined(separator: "; ")
            line = "\(what): refused \(counted) more connection\(counted == 1 ? "" : "s") (\(why))\(over ? "" : "; still refusing")"
            counted = 0
            reasons = [:]
            lastSummary = now
        }
        if over { inBurst = false }
        lock.unlock()
        if let line { log.warning("\(line)") }
        if !over { schedule(after: min(quiet, 1)) }
    }
}
