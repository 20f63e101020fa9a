// ConnectionSlots: the connection table of a server, with its limits. At
// most `limit` connections are admitted; when the table is full, a new
// client takes the slot of the connection that has been idle longest
// (nothing in flight, nothing received for at least `minIdleToEvict`),
// preferring connections still in their handshake; if none qualifies the
// new client is refused. A sweeper closes connections that overstay:
// handshake longer than `handshakeTimeout`, idle longer than `idleTimeout`,
// or replies not read by the client for `stallTimeout` (`pressureStall`
// while `underPressure(id)` says other connections wait for memory). Connections report
// their state through `update`; the table takes one lock per report.
import Dispatch
import Foundation

/// A connection the table can close.
public protocol SlotConnection: AnyObject, Sendable {
    /// Closes the connection (from any thread) and logs `reason`.
    func closeForPolicy(_ reason: String)
}

public struct SlotPolicy: Sendable {
    public var limit: Int
    /// Seconds a connection may take to finish its handshake (0: no limit).
    public var handshakeTimeout: TimeInterval
    /// Seconds a connection may stay idle (0: no limit).
    public var idleTimeout: TimeInterval
    /// Seconds a client may leave its replies unread before it is dropped (0: no limit).
    public var stallTimeout: TimeInterval
    /// The same while other clients wait for memory.
    public var pressureStall: TimeInterval
    /// Idle seconds after which a connection may lose its slot to a new client.
    public var minIdleToEvict: TimeInterval

    public init(limit: Int, handshakeTimeout: TimeInterval, idleTimeout: TimeInterval,
                stallTimeout: TimeInterval, pressureStall: TimeInterval = 2, minIdleToEvict: TimeInterval = 1) {
        self.limit = limit
        self.handshakeTimeout = handshakeTimeout
        self.idleTimeout = idleTimeout
        self.stallTimeout = stallTimeout
        self.pressureStall = pressureStall
        self.minIdleToEvict = minIdleToEvict
    }
}

// @unchecked Sendable: slots and counters are read and changed only under `lock`; the sweeper runs on its own queue and takes the lock too.
public final class ConnectionSlots<Conn: SlotConnection>: @unchecked Sendable {
    public enum Admission {
        case admitted
        /// Admitted; `victim` lost its slot and must be closed by the caller.
        case admittedEvicting(victim: Conn, idle: TimeInterval)
        case refused(reason: String)
    }

    struct Entry {
        let conn: Conn
        var inHandshake = true
        var since: TimeInterval
        var lastActivity: TimeInterval
        /// Requests or commands being worked on.
        var busy = false
        /// Replies handed to the socket and not yet written out, and when the
        /// last write completed (or the first of them was queued).
        var queued = false
        var lastWrite: TimeInterval
    }

    public let policy: SlotPolicy
    private let lock = NSLock()
    private var entries: [Int: Entry] = [:]
    private var timer: DispatchSourceTimer?
    private let underPressure: @Sendable (Int) -> Bool

    public init(policy: SlotPolicy, underPressure: @escaping @Sendable (Int) -> Bool = { _ in false }) {
        self.policy = policy
        self.underPressure = underPressure
    }

    static var now: TimeInterval { ProcessInfo.processInfo.systemUptime }

    public var count: Int {
        lock.lock(); defer { lock.unlock() }
        return entries.count
    }

    /// Admits connection `id`, possibly evicting an idle one.
    public func admit(_ id: Int, _ conn: Conn, inHandshake: Bool = true) -> Admission {
        let t = Self.now
        lock.lock()
        defer { lock.unlock() }
        let entry = Entry(conn: conn, inHandshake: inHandshake, since: t, lastActivity: t, lastWrite: t)
        if entries.count < policy.limit {
            entries[id] = entry
            return .admitted
        }
        var best: (id: Int, handshake: Bool, last: TimeInterval)?
        for (k, e) in entries where !e.busy && !e.queued && t - e.lastActivity >= policy.minIdleToEvict {
            if let b = best {
                // Handshaking connections go first, then the longest idle.
                if (e.inHandshake && !b.handshake) || (e.inHandshake == b.handshake && e.lastActivity < b.last) {
                    best = (k, e.inHandshake, e.lastActivity)
                }
            } else {
                best = (k, e.inHandshake, e.lastActivity)
            }
        }
        guard let b = best, let victim = entries.removeValue(forKey: b.id) else {
            return .refused(reason: "too many connections (\(policy.limit), none idle)")
        }
        entries[id] = entry
        return .admittedEvicting(victim: victim.conn, idle: t - b.last)
    }

    /// Removes a connection; false if it was not (or no longer) in the table.
    @discardableResult
    public func remove(_ id: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return entries.removeValue(forKey: id) != nil
    }

    /// Reports a connection's state; `activity` marks it active now.
    public func update(_ id: Int, inHandshake: Bool? = nil, busy: Bool? = nil, queued: Bool? = nil,
                       wrote: Bool = false, activity: Bool = false) {
        let t = Self.now
        lock.lock(); defer { lock.unlock() }
        guard var e = entries[id] else { return }
        if let h = inHandshake { e.inHandshake = h }
        if let b = busy { e.busy = b }
        if let q = queued {
            if q && !e.queued { e.lastWrite = t }
            e.queued = q
        }
        if wrote { e.lastWrite = t }
        if activity { e.lastActivity = t }
        entries[id] = e
    }

    /// Starts the sweeper (every `period` seconds; `also` runs after each sweep).
    public func startSweeping(period: TimeInterval = 0.5, queue: DispatchQueue = DispatchQueue(label: "backy-slot-sweeper"),
                              also: @escaping @Sendable () -> Void = {}) {
        let t = DispatchSource.makeTimerSource(queue: queue)
        t.schedule(deadline: .now() + period, repeating: period, leeway: .milliseconds(100))
        t.setEventHandler { [weak self] in
            self?.sweep()
            also()
        }
        t.resume()
        timer = t
    }

    public func stopSweeping() {
        timer?.cancel()
        timer = nil
    }

    /// Closes the connections that overstay; returns how many.
    @discardableResult
    public func sweep() -> Int {
        let t = Self.now
        var closing: [(Conn, String)] = []
        lock.lock()
        for (k, e) in entries {
            var why: String?
            if e.inHandshake {
                if policy.handshakeTimeout > 0 && t - e.since > policy.handshakeTimeout {
                    why = "handshake not finished within \(Self.seconds(policy.handshakeTimeout))"
                }
            } else if e.queued {
                let pressure = t - e.lastWrite > policy.pressureStall && underPressure(k)
                let limit = pressure ? policy.pressureStall : policy.stallTimeout
                if limit > 0 && t - e.lastWrite > limit {
                    why = "client has not read its replies for \(Self.seconds(t - e.lastWrite))\(pressure ? " while other clients wait for memory" : "")"
                }
            } else if !e.busy && policy.idleTimeout > 0 && t - e.lastActivity > policy.idleTimeout {
                why = "idle for \(Self.seconds(policy.idleTimeout))"
            }
            if let why {
                entries[k] = nil
                closing.append((e.conn, why))
            }
        }
        lock.unlock()
        for (c, why) in closing { c.closeForPolicy(why) }
        return closing.count
    }

    static func seconds(_ s: TimeInterval) -> String {
        s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s)
    }
}
