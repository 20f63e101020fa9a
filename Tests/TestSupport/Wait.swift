// Wait: tests wait for a state (a connection count, a server that answers, a
// line in a log), never for a fixed time that is usually long enough.
import Foundation

/// Polls `condition` every `poll` seconds until it holds or `timeout`
/// passes; returns whether it held.
@discardableResult
public func waitUntil(timeout: Double, poll: Double = 0.02, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(useconds_t(poll * 1e6))
    }
    return condition()
}
