// ReplyBudget: the memory all connections together may hold for replies
// not yet written to their sockets and for write payloads, so that clients
// which do not read their replies cannot make the server grow. A reply
// counts what it keeps alive: copied bytes, or the whole 4 MiB buffer of a
// cached chunk it sends a slice of. A connection that cannot get budget
// parks its request and stops reading; waiters are served first come first
// served, and while someone has waited for half a second the table of
// connections drops clients that leave their replies unread (see
// ConnectionSlots). One request is always admitted when nothing is held, so
// a request larger than the budget still makes progress.
import Foundation
import NIOCore

final class ReplyBudget: @unchecked Sendable {
    let limit: Int
    private let lock = NSLock()
    private var used = 0
    private var peak = 0
    /// Waiting connections in arrival order, with how to wake them.
    private var waiters: [(id: Int, since: TimeInterval, wake: () -> Void)] = []

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Bytes held now, and the most ever held.
    var held: Int { lock.lock(); defer { lock.unlock() }; return used }
    var highWater: Int { lock.lock(); defer { lock.unlock() }; return peak }

    /// Takes `n` bytes for connection `id`, or queues it (once) and returns
    /// false; `wake` is called when it should try again.
    func take(_ id: Int, _ n: Int, wake: @escaping () -> Void) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let first = waiters.first?.id
        if first == nil || first == id {
            if used + n <= limit || used == 0 {
                if first == id { waiters.removeFirst() }
                used += n
                peak = max(peak, used)
                let next = waiters.first?.wake
                if let next, used < limit { DispatchQueue.global().async { next() } }
                return true
            }
        }
        if !waiters.contains(where: { $0.id == id }) {
            waiters.append((id, ProcessInfo.processInfo.systemUptime, wake))
        }
        return false
    }

    /// Changes what a connection holds without waiting (a reply's real cost
    /// differs from its estimate); a release wakes the first waiter.
    func adjust(_ delta: Int) {
        if delta == 0 { return }
        lock.lock()
        used += delta
        peak = max(peak, used)
        let wake = delta < 0 ? waiters.first?.wake : nil
        lock.unlock()
        wake?()
    }

    /// A connection is gone: it stops waiting.
    func leave(_ id: Int) {
        lock.lock()
        let wasFirst = waiters.first?.id == id
        waiters.removeAll { $0.id == id }
        let wake = wasFirst ? waiters.first?.wake : nil
        lock.unlock()
        wake?()
    }

    /// Someone other than connection `id` has waited for budget for more
    /// than half a second.
    func underPressure(besides id: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        let t = ProcessInfo.processInfo.systemUptime
        return waiters.contains { $0.id != id && t - $0.since > 0.5 }
    }
}
