// RadosLease: a RADOS lock held for a while — taken with a duration,
// renewed by the connection's keeper thread every third of it, and known
// to be lost as soon as it may have lapsed. A process that dies or stalls
// stops renewing, and the OSD drops its lock when the duration ends.
//
// When is it held? The OSD sets a lock's end to (its clock when it took
// the request) + duration; we know only when we sent the request. So the
// lease counts as held until (send time of the last successful renewal) +
// duration, on CLOCK_BOOTTIME (runs on while the process is stopped or the
// machine sleeps) — never longer than the OSD's own view. A renewal whose
// answer comes after that moment (a stall, a slow OSD) may have re-taken a
// lock that had lapsed meanwhile: the lease is then lost all the same and
// is never renewed again, because someone may have acted on the lapse. A
// lost lease stays lost; callers check `isHeld`/`check()` before they rely
// on it, and guard the writes that matter with `RadosWriteOp.assertHeld`,
// which the OSD refuses once the lock has expired, whatever this process
// believes.
import CRBD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Seconds since boot, counting time the process was stopped or the
/// machine slept (CLOCK_BOOTTIME).
public enum LeaseClock {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

// @unchecked Sendable: `validUntil`, `lostReason`, `released` and `lostHandlers` are read and changed only under `mutex`; `renewalsPausedUntil` is only read (a hook left at 0).
public final class RadosLease: @unchecked Sendable {
    public let io: RadosIoctx
    public let oid: String
    public let name: String
    public let kind: RadosLockKind
    public let cookie: String
    public let tag: String
    public let description: String
    /// Seconds the OSD keeps the lock after each renewal.
    public let duration: Double

    private let mutex = NSLock()
    private var validUntil: Double
    private var lostReason: String?
    private var released = false
    private var lostHandlers: [@Sendable (String) -> Void] = []
    /// Test hook: renewals are skipped until this time (a stalled renewer).
    var renewalsPausedUntil: Double = 0

    private init(io: RadosIoctx, oid: String, name: String, kind: RadosLockKind, cookie: String, tag: String,
                 description: String, duration: Double, validUntil: Double) {
        self.io = io
        self.oid = oid
        self.name = name
        self.kind = kind
        self.cookie = cookie
        self.tag = tag
        self.description = description
        self.duration = duration
        self.validUntil = validUntil
    }

    deinit { release() }

    /// Takes the lock once; nil if someone else holds it.
    public static func tryAcquire(io: RadosIoctx, oid: String, name: String, kind: RadosLockKind, cookie: String,
                                  tag: String = "", description: String = "", duration: Double) throws -> RadosLease? {
        let sent = LeaseClock.now()
        let outcome = try io.lock(oid, name: name, kind: kind, cookie: cookie, tag: tag, description: description,
                                  duration: duration)
        guard outcome == .acquired else { return nil }
        let lease = RadosLease(io: io, oid: oid, name: name, kind: kind, cookie: cookie, tag: tag,
                               description: description, duration: duration, validUntil: sent + duration)
        if LeaseClock.now() >= lease.validUntil {
            // The answer came after the lock may already have lapsed.
            lease.release()
            throw RadosError(.lockLost, "lock \(name) on \(io.describe(oid)) expired before it was confirmed (the OSD answered after \(duration) s)")
        }
        io.cluster.keeper.add(lease)
        return lease
    }

    /// Takes the lock, trying again (with growing pauses up to `poll`
    /// seconds) while someone else holds it; nil if it was still held after
    /// `timeout` seconds (nil timeout: wait as long as it takes).
    public static func acquire(io: RadosIoctx, oid: String, name: String, kind: RadosLockKind, cookie: String,
                               tag: String = "", description: String = "", duration: Double,
                               timeout: Double?, poll: Double = 0.5) throws -> RadosLease? {
        let deadline = timeout.map { LeaseClock.now() + $0 }
        var pause = 0.01
        while true {
            if let l = try tryAcquire(io: io, oid: oid, name: name, kind: kind, cookie: cookie, tag: tag,
                                      description: description, duration: duration) {
                return l
            }
            if let d = deadline, LeaseClock.now() + pause > d { return nil }
            // A little jitter keeps two waiters from retrying in step.
            usleep(useconds_t(pause * Double.random(in: 0.75...1.25) * 1e6))
            pause = min(pause * 2, poll)
        }
    }

    /// Whether the lock is certainly still ours right now.
    public var isHeld: Bool {
        mutex.lock(); defer { mutex.unlock() }
        return lostReason == nil && !released && LeaseClock.now() < validUntil
    }

    /// Seconds the lock is certainly ours (0 if lost).
    public var secondsLeft: Double {
        mutex.lock(); defer { mutex.unlock() }
        if lostReason != nil || released { return 0 }
        return max(0, validUntil - LeaseClock.now())
    }

    /// Why the lease was lost; nil while held.
    public var lost: String? {
        mutex.lock(); defer { mutex.unlock() }
        if let r = lostReason { return r }
        if released { return "released" }
        if LeaseClock.now() >= validUntil { return lapsedReason() }
        return nil
    }

    private func lapsedReason() -> String {
        "lock \(name) on \(io.describe(oid)) was not renewed within its \(Self.seconds(duration)) (the process stalled or the cluster did not answer)"
    }

    static func seconds(_ d: Double) -> String {
        d == d.rounded() ? "\(Int(d)) s" : String(format: "%.1f s", d)
    }

    /// Throws `.lockLost` unless the lease is held.
    public func check() throws {
        if let why = lost { throw RadosError(.lockLost, why) }
    }

    /// Calls `handler` (on the keeper thread) when the lease is lost.
    public func onLost(_ handler: @escaping @Sendable (String) -> Void) {
        mutex.lock()
        if let r = lostReason {
            mutex.unlock()
            handler(r)
            return
        }
        lostHandlers.append(handler)
        mutex.unlock()
    }

    /// Releases the lock (if still held) and stops renewing it.
    public func release() {
        mutex.lock()
        if released { mutex.unlock(); return }
        released = true
        mutex.unlock()
        io.cluster.keeper.remove(self)
        // After a timeout the cluster is not answering: the lock lapses
        // after its duration instead of this call waiting out another.
        if RadosStall.recent(within: duration) { return }
        _ = try? io.unlock(oid, name: name, cookie: cookie)
    }

    /// When the keeper should renew next.
    var renewalDue: Double {
        mutex.lock(); defer { mutex.unlock() }
        return validUntil - duration * 2 / 3
    }

    /// Whether the keeper is done with it.
    var finished: Bool {
        mutex.lock(); defer { mutex.unlock() }
        return released || lostReason != nil
    }

    private func markLost(_ why: String) {
        mutex.lock()
        if lostReason != nil || released { mutex.unlock(); return }
        lostReason = why
        let handlers = lostHandlers
        lostHandlers = []
        mutex.unlock()
        // Should a late renewal have re-taken a lapsed lock, give it back.
        _ = try? io.unlock(oid, name: name, cookie: cookie)
        for h in handlers { h(why) }
    }

    /// Renews once (keeper thread).
    func renew() {
        let sent = LeaseClock.now()
        mutex.lock()
        let until = validUntil
        let skip = released || lostReason != nil
        let paused = sent < renewalsPausedUntil
        mutex.unlock()
        if skip { return }
        if sent >= until {
            markLost(lapsedReason())
            return
        }
        if paused { return }
        let outcome: RadosIoctx.LockOutcome
        do {
            outcome = try io.lock(oid, name: name, kind: kind, cookie: cookie, tag: tag, description: description,
                                  duration: duration, renew: true)
        } catch {
            if LeaseClock.now() >= until { markLost("\(lapsedReason()): \(error)") }
            // Otherwise try again at the next turn while time is left.
            return
        }
        let answered = LeaseClock.now()
        if outcome == .busy {
            markLost("lock \(name) on \(io.describe(oid)) is held by someone else now (it lapsed or was broken)")
            return
        }
        if answered >= until {
            markLost(lapsedReason())
            return
        }
        mutex.lock()
        if !released && lostReason == nil { validUntil = sent + duration }
        mutex.unlock()
    }
}

/// One thread per cluster connection that renews its leases on time.
// @unchecked Sendable: `leases`, `stopping` and `thread` are read and changed only under `cond`.
final class RadosLeaseKeeper: @unchecked Sendable {
    private let cond = NSCondition()
    private var leases: [ObjectIdentifier: RadosLease] = [:]
    private var stopping = false
    private var thread: Thread?
    /// Retry pause after a failed renewal that left time.
    private let retry = 0.2

    func add(_ lease: RadosLease) {
        cond.lock()
        leases[ObjectIdentifier(lease)] = lease
        if thread == nil {
            let t = Thread { [weak self] in self?.run() }
            t.name = "rados-lease-keeper"
            thread = t
            t.start()
        }
        cond.broadcast()
        cond.unlock()
    }

    func remove(_ lease: RadosLease) {
        cond.lock()
        leases[ObjectIdentifier(lease)] = nil
        cond.broadcast()
        cond.unlock()
    }

    func stop() {
        cond.lock()
        stopping = true
        cond.broadcast()
        cond.unlock()
    }

    private func run() {
        cond.lock()
        while !stopping {
            for (k, l) in leases where l.finished { leases[k] = nil }
            guard let next = leases.values.min(by: { $0.renewalDue < $1.renewalDue }) else {
                cond.wait()
                continue
            }
            let due = next.renewalDue
            let now = LeaseClock.now()
            if due > now {
                _ = cond.wait(until: Date().addingTimeInterval(due - now))
                continue
            }
            cond.unlock()
            let before = next.renewalDue
            next.renew()
            cond.lock()
            // A renewal that changed nothing (failed, paused) waits a little.
            if !next.finished && next.renewalDue == before {
                _ = cond.wait(until: Date().addingTimeInterval(retry))
            }
        }
        cond.unlock()
    }
}
