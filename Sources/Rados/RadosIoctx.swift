// RadosIoctx: an I/O context on one pool and namespace — the object calls
// backy needs: whole-object reads (with size and version, into the
// caller's buffer), atomic whole-object writes, appends, stats, removes,
// xattrs, compound write ops, their asynchronous forms for pipelining, and
// listing the namespace. Thread-safe: librados allows one I/O context to be
// used from many threads (nothing here changes its namespace after
// creation). Keeps its cluster connection alive.
import CRBD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: only `let`s; librados allows an ioctx to be used from several threads at once; it is destroyed in deinit.
public final class RadosIoctx: @unchecked Sendable {
    public let handle: rados_ioctx_t
    public let cluster: RadosCluster
    public let pool: String
    public let namespace: String

    init(handle: rados_ioctx_t, cluster: RadosCluster, pool: String, namespace: String) {
        self.handle = handle
        self.cluster = cluster
        self.pool = pool
        self.namespace = namespace
    }

    deinit { rados_ioctx_destroy(handle) }

    /// "pool/namespace" (or "pool" for the default namespace).
    public var location: String { namespace.isEmpty ? pool : pool + "/" + namespace }

    /// How messages name an object: "object OID in POOL/NS".
    public func describe(_ oid: String) -> String { "object \(oid) in \(location)" }

    // MARK: reads

    /// What a whole-object read found.
    public struct Read: Sendable, Equatable {
        /// The object's size.
        public var size: UInt64
        /// Bytes placed in the buffer: min(size, buffer size).
        public var count: Int
        public var version: UInt64
        /// True if the object is larger than the buffer (the buffer holds
        /// only its first bytes).
        public var truncated: Bool { UInt64(count) < size }
    }

    /// Reads the object from its start into `buffer` (size and read taken
    /// together, so `count < size` means it did not fit). nil if there is no
    /// such object.
    public func read(_ oid: String, into buffer: UnsafeMutableRawBufferPointer) throws -> Read? {
        try aioRead(oid, into: buffer).result()
    }

    /// Starts a whole-object read into `buffer`, which must stay untouched
    /// until the read's `result()` returns.
    public func aioRead(_ oid: String, into buffer: UnsafeMutableRawBufferPointer) throws -> RadosReadCompletion {
        try RadosReadCompletion(io: self, oid: oid, buffer: buffer)
    }

    /// The whole object, if it is at most `limit` bytes; nil if there is no
    /// such object. A larger object is an error.
    public func readAll(_ oid: String, limit: Int) throws -> (bytes: [UInt8], version: UInt64)? {
        var capacity = min(limit, 64 << 10)
        while true {
            var bytes = [UInt8](repeating: 0, count: max(capacity, 1))
            let got = try bytes.withUnsafeMutableBytes { try read(oid, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<capacity])) }
            guard let got else { return nil }
            if got.size > UInt64(limit) {
                throw RadosError(.operation, "\(describe(oid)) is \(got.size) bytes, more than the \(limit) allowed", EFBIG)
            }
            if !got.truncated {
                bytes.removeSubrange(got.count...)
                return (bytes, got.version)
            }
            // It grew past the first guess (or was larger): read it whole.
            capacity = Int(got.size)
        }
    }

    /// Reads up to `buffer.count` bytes at `offset` (synchronously);
    /// returns the byte count, or a negative errno.
    public func readAt(_ oid: String, into buffer: UnsafeMutableRawBufferPointer, offset: UInt64) -> Int32 {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        return rados_read(handle, oid, base.assumingMemoryBound(to: CChar.self), buffer.count, offset)
    }

    /// Size, mtime and version; nil if there is no such object.
    public func stat(_ oid: String) throws -> RadosObjectStat? {
        try RadosStatCompletion(io: self, oid: oid).result()
    }

    /// Starts a stat.
    public func aioStat(_ oid: String) throws -> RadosStatCompletion {
        try RadosStatCompletion(io: self, oid: oid)
    }

    /// The stats of many objects, `window` of them in flight at once (one
    /// round trip per window instead of per object); nil where an object
    /// does not exist.
    public func stats(_ oids: [String], window: Int = 64) throws -> [RadosObjectStat?] {
        var out = [RadosObjectStat?](repeating: nil, count: oids.count)
        var pending: [(Int, RadosStatCompletion)] = []
        pending.reserveCapacity(window)
        var next = 0
        while next < oids.count || !pending.isEmpty {
            while next < oids.count && pending.count < window {
                pending.append((next, try aioStat(oids[next])))
                next += 1
            }
            let (i, c) = pending.removeFirst()
            out[i] = try c.result()
        }
        return out
    }

    /// An xattr's value; nil if the object or the xattr does not exist.
    public func xattr(_ oid: String, _ name: String, limit: Int = 64 << 10) throws -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: limit)
        let r = buf.withUnsafeMutableBytes { b in
            rados_getxattr(handle, oid, name, b.baseAddress!.assumingMemoryBound(to: CChar.self), b.count)
        }
        if r == -ENOENT || r == -ENODATA { return nil }
        if r < 0 { throw RadosError("cannot read xattr \(name) of \(describe(oid))", r) }
        return Array(buf[0..<Int(r)])
    }

    // MARK: writes

    /// Runs a compound write op on `oid`; throws with the op's error (a
    /// failed guard: ENOENT, EEXIST, ECANCELED, ERANGE, EBUSY, ...).
    public func operate(_ op: RadosWriteOp, on oid: String, flags: RadosOpFlags = [], what: @autoclosure () -> String) throws {
        try aioOperate(op, on: oid, flags: flags, what: what()).check()
    }

    /// Starts a compound write op; `version` of the completion is the
    /// object's version after it.
    public func aioOperate(_ op: RadosWriteOp, on oid: String, flags: RadosOpFlags = [], what: String) throws -> RadosCompletion {
        let c = try RadosCompletion(what: what)
        c.retained.append(op)
        let r = rados_aio_write_op_operate(op.op, handle, c.completion, oid, nil, flags.rawValue)
        if r < 0 {
            c.forget(r)
            throw RadosError(what, r)
        }
        return c
    }

    /// Replaces the object with `bytes` atomically (readers see the old or
    /// the new bytes, never a mix). Fails at once on a full cluster.
    public func writeFull(_ oid: String, _ bytes: UnsafeRawBufferPointer) throws {
        try operate(RadosWriteOp().writeFull(bytes), on: oid, flags: .fullTry, what: "cannot write \(describe(oid))")
    }

    public func writeFull(_ oid: String, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeFull(oid, $0) }
    }

    /// Starts an atomic whole-object write (the bytes are copied at once).
    public func aioWriteFull(_ oid: String, _ bytes: UnsafeRawBufferPointer) throws -> RadosCompletion {
        try aioOperate(RadosWriteOp().writeFull(bytes), on: oid, flags: .fullTry, what: "cannot write \(describe(oid))")
    }

    /// Creates the object with `bytes` unless it exists; false if it did.
    @discardableResult
    public func createExclusive(_ oid: String, _ bytes: [UInt8]) throws -> Bool {
        do {
            try operate(RadosWriteOp().create(exclusive: true).writeFull(bytes), on: oid, flags: .fullTry,
                        what: "cannot create \(describe(oid))")
            return true
        } catch let e as RadosError where e.isExisting {
            return false
        }
    }

    /// Appends `bytes` (creates the object if needed).
    public func append(_ oid: String, _ bytes: [UInt8]) throws {
        try operate(RadosWriteOp().append(bytes), on: oid, flags: .fullTry, what: "cannot append to \(describe(oid))")
    }

    public func setXattr(_ oid: String, _ name: String, _ value: [UInt8]) throws {
        try operate(RadosWriteOp().setXattr(name, value), on: oid, flags: .fullTry,
                    what: "cannot set xattr \(name) of \(describe(oid))")
    }

    /// Removes the object; false if it did not exist. Allowed on a full
    /// cluster (it frees space).
    @discardableResult
    public func remove(_ oid: String) throws -> Bool {
        do {
            try operate(RadosWriteOp().remove(), on: oid, flags: .fullForce, what: "cannot remove \(describe(oid))")
            return true
        } catch let e as RadosError where e.isNotFound {
            return false
        }
    }

    /// Starts a removal (ENOENT if it is gone); `version`: only if the
    /// object is still at that version (ERANGE if it changed).
    public func aioRemove(_ oid: String, ifVersion version: UInt64? = nil) throws -> RadosCompletion {
        let op = RadosWriteOp()
        if let v = version { op.assertVersion(v) }
        op.remove()
        return try aioOperate(op, on: oid, flags: .fullForce, what: "cannot remove \(describe(oid))")
    }

    // MARK: listing

    /// Calls `body` with the name of every object in this namespace (in no
    /// particular order); `body` returns false to stop. Objects written or
    /// removed during the listing may or may not be seen. The cost grows
    /// with the whole pool (listing walks every placement group).
    public func forEachObject(_ body: (String) throws -> Bool) throws {
        var ctx: rados_list_ctx_t?
        var r = rados_nobjects_list_open(handle, &ctx)
        guard r == 0, let ctx else { throw RadosError("cannot list the objects of \(location)", r) }
        defer { rados_nobjects_list_close(ctx) }
        while true {
            var entry: UnsafePointer<CChar>?
            var size = 0
            r = rados_nobjects_list_next2(ctx, &entry, nil, nil, &size, nil, nil)
            if r == -ENOENT { return }
            if r < 0 { throw RadosError("cannot list the objects of \(location)", r) }
            guard let entry else { continue }
            let name = String(decoding: UnsafeRawBufferPointer(start: entry, count: size), as: UTF8.self)
            if try !body(name) { return }
        }
    }

    /// Every object name in this namespace.
    public func objects() throws -> [String] {
        var out: [String] = []
        try forEachObject { out.append($0); return true }
        return out
    }
}

/// An asynchronous whole-object read (stat and read in one op).
// @unchecked Sendable: librados writes the result pointers and the buffer before the completion completes; they are read only after wait().
public final class RadosReadCompletion: @unchecked Sendable {
    public let completion: RadosCompletion
    private let op: rados_read_op_t
    private let slots = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
    private let size = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let mtime = UnsafeMutablePointer<time_t>.allocate(capacity: 1)
    private let got = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    private let oid: String

    init(io: RadosIoctx, oid: String, buffer: UnsafeMutableRawBufferPointer) throws {
        self.oid = oid
        completion = try RadosCompletion(what: "cannot read \(io.describe(oid))")
        op = rados_create_read_op()
        slots[0] = 0; slots[1] = 0; size.pointee = 0; mtime.pointee = 0; got.pointee = 0
        rados_read_op_stat(op, size, mtime, slots)
        rados_read_op_read(op, 0, buffer.count, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), got, slots + 1)
        let r = rados_aio_read_op_operate(op, io.handle, completion.completion, oid, 0)
        if r < 0 {
            completion.forget(r)
            throw RadosError(completion.what, r)
        }
    }

    deinit {
        completion.wait()
        rados_release_read_op(op)
        slots.deallocate(); size.deallocate(); mtime.deallocate(); got.deallocate()
    }

    /// Waits; nil if the object does not exist.
    public func result() throws -> RadosIoctx.Read? {
        let r = completion.wait()
        if r == -ENOENT { return nil }
        if r < 0 { throw RadosError(completion.what, r) }
        for s in 0..<2 where slots[s] < 0 {
            if slots[s] == -ENOENT { return nil }
            throw RadosError(completion.what, slots[s])
        }
        return RadosIoctx.Read(size: size.pointee, count: got.pointee, version: completion.version)
    }
}
