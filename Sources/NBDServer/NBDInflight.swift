// NBDInflight: one NBD connection's in-flight accounting — requests being
// served, bytes held of the server's reply budget (docs/nbd.md, "Safety
// and limits"), replies handed to the channel and not yet written, a read
// parked until budget frees up — and what to tell the connection table:
// busy or idle, replies waiting, write progress (at most twice a second).
// A value kept on the connection's event loop; no I/O.
import Foundation

struct NBDInflight {
    /// Requests counted from decoding until their reply is written.
    var requests = 0
    /// Bytes this connection holds of the server's reply budget.
    var bytes = 0
    /// Replies handed to the channel and not yet written.
    var queuedReplies = 0
    /// Once the connection closed, what it held went back at once: later
    /// releases do not count again.
    var budgetReturned = false
    /// A read waiting for reply budget (decoding waits with it).
    var parked: NBDRequest?
    var waitingForBudget = false

    private var reported = (busy: false, queued: false)
    private var lastWriteReport: TimeInterval = 0

    /// What the connection table is told.
    struct Report: Equatable {
        var busy: Bool
        var queued: Bool
        /// A reply was written since the last report of progress.
        var wrote: Bool
        /// The connection became busy or idle (the idle timeout restarts).
        var activity: Bool
    }

    /// Whether decoding must pause: too many requests or bytes in flight,
    /// or a read waits for budget.
    func full(maxRequests: Int, maxBytes: Int) -> Bool {
        waitingForBudget || requests >= maxRequests || bytes >= maxBytes
    }

    /// The report due now, if any: on a change of busy or queued, and on
    /// write progress at most every half second (`now` in seconds).
    mutating func report(wrote: Bool, now: TimeInterval) -> Report? {
        let state = (busy: requests > 0, queued: queuedReplies > 0)
        var progress = false
        if wrote && now - lastWriteReport > 0.5 {
            lastWriteReport = now
            progress = true
        }
        guard state != reported || progress else { return nil }
        let activity = state.busy != reported.busy
        reported = state
        return Report(busy: state.busy, queued: state.queued, wrote: progress, activity: activity)
    }
}
