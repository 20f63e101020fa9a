// RadosLocks: RADOS advisory locks (the OSD's `lock` object class) — take
// exclusive or shared with a duration, release, list the holders, break a
// holder's lock — and the encoding of cls_lock's assert_locked input for
// fencing guards. A lock is held by (client instance, cookie); the OSD
// drops a holder once its duration has passed (by the OSD's clock), at the
// next look at the lock. Advisory: a lock stops nobody's writes; guards do
// (RadosWriteOp.assertLocked).
import CRBD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum RadosLockKind: Sendable, Equatable {
    case exclusive
    case shared

    /// cls_lock's ClsLockType number.
    var code: UInt8 { self == .exclusive ? 1 : 2 }
}

/// The holders of a lock, as the OSD sees them now (expired ones dropped).
public struct RadosLockInfo: Sendable, Equatable {
    public struct Holder: Sendable, Equatable {
        /// "client.<instance>"
        public var client: String
        public var cookie: String
        public var address: String
    }
    public var exclusive: Bool
    public var tag: String
    public var holders: [Holder]
}

extension RadosIoctx {
    /// What a lock attempt found.
    public enum LockOutcome: Sendable, Equatable {
        case acquired
        /// Another (client, cookie) holds it, or holds it in the other mode.
        case busy
    }

    /// Takes lock `name` on `oid` (creating the object if needed) for
    /// `duration` seconds; `renew` also succeeds if this (client, cookie)
    /// holds it already, resetting the duration. Without `renew`, a lock
    /// this pair already holds is an error (EEXIST).
    public func lock(_ oid: String, name: String, kind: RadosLockKind, cookie: String, tag: String = "",
                     description: String = "", duration: Double, renew: Bool = false) throws -> LockOutcome {
        precondition(duration > 0, "a lock without a duration outlives a dead holder")
        var tv = timeval(tv_sec: Int(duration.rounded(.down)),
                         tv_usec: __suseconds_t((duration - duration.rounded(.down)) * 1e6))
        let flags = renew ? UInt8(LIBRADOS_LOCK_FLAG_MAY_RENEW) : 0
        let r: Int32
        switch kind {
        case .exclusive: r = rados_lock_exclusive(handle, oid, name, cookie, description, &tv, flags)
        case .shared: r = rados_lock_shared(handle, oid, name, cookie, tag, description, &tv, flags)
        }
        if r == 0 { return .acquired }
        if r == -EBUSY { return .busy }
        throw RadosError("cannot lock \(name) on \(describe(oid))", r)
    }

    /// Releases this client's lock `name`/`cookie`; false if it did not
    /// hold it (it expired, or was broken).
    @discardableResult
    public func unlock(_ oid: String, name: String, cookie: String) throws -> Bool {
        let r = rados_unlock(handle, oid, name, cookie)
        if r == 0 { return true }
        if r == -ENOENT { return false }
        throw RadosError("cannot unlock \(name) on \(describe(oid))", r)
    }

    /// The current holders of lock `name` on `oid` (none if the object does
    /// not exist).
    public func lockInfo(_ oid: String, name: String) throws -> RadosLockInfo {
        var sizes = (tag: 256, clients: 1024, cookies: 1024, addrs: 1024)
        while true {
            var exclusive: Int32 = 0
            var tag = [CChar](repeating: 0, count: sizes.tag)
            var clients = [CChar](repeating: 0, count: sizes.clients)
            var cookies = [CChar](repeating: 0, count: sizes.cookies)
            var addrs = [CChar](repeating: 0, count: sizes.addrs)
            var tl = tag.count, cl = clients.count, kl = cookies.count, al = addrs.count
            let n = rados_list_lockers(handle, oid, name, &exclusive, &tag, &tl, &clients, &cl, &cookies, &kl, &addrs, &al)
            if n == -ERANGE {
                sizes = (max(tl, sizes.tag * 2), max(cl, sizes.clients * 2), max(kl, sizes.cookies * 2), max(al, sizes.addrs * 2))
                continue
            }
            if n == -ENOENT { return RadosLockInfo(exclusive: false, tag: "", holders: []) }
            if n < 0 { throw RadosError("cannot list the holders of \(name) on \(describe(oid))", Int32(truncatingIfNeeded: n)) }
            func split(_ b: [CChar], _ len: Int) -> [String] {
                var out: [String] = []
                var cur: [UInt8] = []
                for c in b[0..<min(len, b.count)] {
                    if c == 0 { out.append(String(decoding: cur, as: UTF8.self)); cur = [] } else { cur.append(UInt8(bitPattern: c)) }
                }
                if !cur.isEmpty { out.append(String(decoding: cur, as: UTF8.self)) }
                return out
            }
            let cs = split(clients, cl), ks = split(cookies, kl), as_ = split(addrs, al)
            var holders: [RadosLockInfo.Holder] = []
            for i in 0..<Int(n) {
                holders.append(.init(client: i < cs.count ? cs[i] : "", cookie: i < ks.count ? ks[i] : "",
                                     address: i < as_.count ? as_[i] : ""))
            }
            return RadosLockInfo(exclusive: exclusive != 0, tag: n > 0 ? String(cString: tag) : "", holders: holders)
        }
    }

    /// Breaks `client`'s lock `name`/`cookie`; false if it was not held.
    @discardableResult
    public func breakLock(_ oid: String, name: String, client: String, cookie: String) throws -> Bool {
        let r = rados_break_lock(handle, oid, name, client, cookie)
        if r == 0 { return true }
        if r == -ENOENT { return false }
        throw RadosError("cannot break \(client)'s lock \(name) on \(describe(oid))", r)
    }
}

/// The input encodings of cls_lock methods (Ceph's versioned struct
/// encoding: version, compat version, u32 length, then the fields; a
/// string is a u32 length and its bytes; all little-endian).
enum ClsLockEncoding {
    static func string(_ s: String, into out: inout [UInt8]) {
        let b = Array(s.utf8)
        u32(UInt32(b.count), into: &out)
        out += b
    }

    static func u32(_ v: UInt32, into out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out += $0 }
    }

    /// A struct with version 1, compat 1 around `body`.
    static func versioned(_ body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [1, 1]
        u32(UInt32(body.count), into: &out)
        return out + body
    }

    /// cls_lock_assert_op: name, type, cookie, tag.
    static func assertOp(name: String, kind: RadosLockKind, cookie: String, tag: String) -> [UInt8] {
        var body: [UInt8] = []
        string(name, into: &body)
        body.append(kind.code)
        string(cookie, into: &body)
        string(tag, into: &body)
        return versioned(body)
    }
}
