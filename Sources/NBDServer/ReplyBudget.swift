// ReplyBudget: the memory all connections together may hold for replies
// not yet written to their sockets and for write payloads, so that clients
// which do not read their replies cannot make the server grow. A reply
// counts what it keeps alive: copied bytes, or the whole 4 MiB buffer of a
// cached chunk it sends a slice of. A connection that cannot get budget
// parks its request and stops reading until it is woken.
//
// Who gets budget when it is short: connections that have shown they read
// ("readers": their client took at least 256 KiB off the socket within the
// last second, see ReadProgress) come first, in arrival order, and may use
// the whole budget. All other connections — new ones, and clients that
// leave their replies unread — together hold at most half of it and are
// served alternately oldest and newest connection first, so that a new
// client is not queued behind a crowd of stalled ones that came earlier
// (each of which would first have to take budget, stall and be dropped).
// Anyone may take budget out of turn while one chunk's worth is left for
// the connection whose turn it is. While someone has waited for half a
// second, the table of connections drops clients that leave their replies
// unread (see ConnectionSlots). One request is always admitted when nothing
// is held, so a request larger than the budget still makes progress.
import Foundation
import NIOCore

// @unchecked Sendable: `used`, `peak`, `holds`, `drained`, `waiters` and `newestTurn` are read and changed only under `lock`.
final class ReplyBudget: @unchecked Sendable {
    let limit: Int
    /// What connections that are not readers may hold together.
    let othersLimit: Int
    /// Seconds a connection counts as a reader after it last showed that it reads.
    static let readerWindow: TimeInterval = 1
    private let lock = NSLock()
    private var used = 0
    private var peak = 0
    /// Bytes held per connection, and when it last showed that it reads.
    private var holds: [Int: Int] = [:]
    private var drained: [Int: TimeInterval] = [:]
    /// Waiting connections in arrival order, with how to wake them.
    private var waiters: [(id: Int, since: TimeInterval, wake: @Sendable () -> Void)] = []
    /// Alternates the turn among non-readers between the oldest and the newest.
    private var newestTurn = true

    init(limit: Int) {
        self.limit = max(1, limit)
        othersLimit = max(1, self.limit / 2)
    }

    static var now: TimeInterval { ProcessInfo.processInfo.systemUptime }

    /// Bytes held now, and the most ever held.
    var held: Int { lock.lock(); defer { lock.unlock() }; return used }
    var highWater: Int { lock.lock(); defer { lock.unlock() }; return peak }

    /// Takes `n` bytes for connection `id`, or queues it (once) and returns
    /// false; `wake` is called when it should try again.
    func take(_ id: Int, _ n: Int, wake: @escaping @Sendable () -> Void) -> Bool {
        let t = Self.now
        lock.lock()
        if !waiters.contains(where: { $0.id == id }) {
            waiters.append((id, t, wake))
        }
        var granted = false
        if fits(id, n, t) && (chosen(t) == id || leavesRoomForTurn(id, n, t)) {
            waiters.removeAll { $0.id == id }
            if !isReader(id, t) { newestTurn.toggle() }
            add(id, n)
            granted = true
        }
        // Wake whoever's turn it is now (not the caller itself, which would
        // only try again at once).
        let next = chosen(t) == id ? nil : wakeLocked(t)
        lock.unlock()
        if let next { DispatchQueue.global().async { next() } }
        return granted
    }

    /// Changes what connection `id` holds without waiting (a reply's real
    /// cost differs from its estimate, or it was written). A release wakes
    /// the connection whose turn it is.
    func adjust(_ id: Int, _ delta: Int) {
        lock.lock()
        add(id, delta)
        let next = delta < 0 ? wakeLocked(Self.now) : nil
        lock.unlock()
        next?()
    }

    /// Connection `id` has just shown that its client reads its replies
    /// (see ReadProgress): it counts as a reader for the next second.
    func reads(_ id: Int) {
        let t = Self.now
        lock.lock()
        drained[id] = t
        let next = wakeLocked(t)
        lock.unlock()
        next?()
    }

    /// A connection is gone: it stops waiting, and what it still holds
    /// (`holding`) goes back.
    func leave(_ id: Int, holding: Int) {
        let t = Self.now
        lock.lock()
        waiters.removeAll { $0.id == id }
        add(id, -holding)
        holds[id] = nil
        drained[id] = nil
        let next = wakeLocked(t)
        lock.unlock()
        next?()
    }

    /// Wakes the connection whose turn it is, if budget is there for it
    /// (the table of connections calls this now and then, so that no
    /// waiter is forgotten when readers turn into non-readers).
    func kick() {
        lock.lock()
        let next = wakeLocked(Self.now)
        lock.unlock()
        next?()
    }

    /// Someone other than connection `id` has waited for budget for more
    /// than half a second.
    func underPressure(besides id: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        let t = Self.now
        return waiters.contains { $0.id != id && t - $0.since > 0.5 }
    }

    // MARK: under the lock

    private func add(_ id: Int, _ delta: Int) {
        if delta == 0 { return }
        used += delta
        peak = max(peak, used)
        holds[id, default: 0] += delta
    }

    private func isReader(_ id: Int, _ t: TimeInterval) -> Bool {
        if let d = drained[id] { return t - d < Self.readerWindow }
        return false
    }

    /// Whether `n` more bytes for `id` fit: within the budget (or nothing is
    /// held at all), and for a non-reader within the others' share (or no
    /// non-reader holds anything).
    private func fits(_ id: Int, _ n: Int, _ t: TimeInterval) -> Bool {
        guard used + n <= limit || used == 0 else { return false }
        if isReader(id, t) { return true }
        let others = othersHeld(t)
        return others + n <= othersLimit || others == 0
    }

    /// Whose turn it is: the first waiting reader, else the oldest or the
    /// newest waiting non-reader, in turn — oldest and newest by when the
    /// connection came (connection ids grow), not by when it queued: a
    /// stalled client that was served queues again at once and must not
    /// pass a new client by that.
    private func chosen(_ t: TimeInterval) -> Int? {
        if let r = waiters.first(where: { isReader($0.id, t) }) { return r.id }
        return newestTurn ? waiters.max { $0.id < $1.id }?.id : waiters.min { $0.id < $1.id }?.id
    }

    /// How to wake the waiter whose turn it is, if its next request may fit
    /// (its size is not known here: one chunk, at least, must be free).
    private func wakeLocked(_ t: TimeInterval) -> (@Sendable () -> Void)? {
        guard let id = chosen(t), let w = waiters.first(where: { $0.id == id }) else { return nil }
        let room = isReader(id, t) ? limit - used : min(limit - used, othersLimit - othersHeld(t))
        return room > 0 || used == 0 ? w.wake : nil
    }

    /// Whether `id` may take `n` bytes although it is not its turn: if one
    /// chunk's worth is still left afterwards for the connection whose turn
    /// it is (nobody waits for budget that is there).
    private func leavesRoomForTurn(_ id: Int, _ n: Int, _ t: TimeInterval) -> Bool {
        guard let c = chosen(t) else { return true }
        let chunk = ChunkMemory.slabSize
        if limit - used - n < chunk { return false }
        if isReader(c, t) { return true }
        return isReader(id, t) || othersLimit - othersHeld(t) - n >= chunk
    }

    private func othersHeld(_ t: TimeInterval) -> Int {
        var others = 0
        for (k, h) in holds where h > 0 && !isReader(k, t) { others += h }
        return others
    }
}
