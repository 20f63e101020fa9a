// RadosCompletion: one asynchronous librados operation in flight — its
// completion, and whatever must stay alive until it completes (the write
// op with its result slots, the stat fields, the read-op counters). `wait`
// returns the operation's result; `version` is the object's version after
// it (what `RadosWriteOp.assertVersion` compares with). The buffer of an
// asynchronous read belongs to the caller, who must not touch it before
// `wait` returns.
import CRBD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: `retained` is filled before the operation is submitted; `waited` is set by wait() on the one thread that owns the completion (librados' completion calls are thread-safe).
public final class RadosCompletion: @unchecked Sendable {
    let completion: rados_completion_t
    /// What the operation writes into or reads from until it completes.
    var retained: [AnyObject] = []
    /// What failed, for the error `check` throws.
    let what: String
    private var waited: Int32?

    init(what: String) throws {
        self.what = what
        var c: rados_completion_t?
        let r = rados_aio_create_completion2(nil, nil, &c)
        guard r == 0, let c else { throw RadosError("cannot create a librados completion", r) }
        completion = c
    }

    deinit {
        // Never free what an operation in flight may still write into.
        if waited == nil { rados_aio_wait_for_complete(completion) }
        rados_aio_release(completion)
    }

    /// Waits for the operation; its return value (negative errno on failure).
    @discardableResult
    public func wait() -> Int32 {
        if let w = waited { return w }
        rados_aio_wait_for_complete(completion)
        let r = Int32(truncatingIfNeeded: rados_aio_get_return_value(completion))
        waited = r
        return r
    }

    /// Whether the operation has completed (without waiting).
    public var isComplete: Bool { rados_aio_is_complete(completion) != 0 }

    /// Waits; throws unless it succeeded. Returns the result (>= 0).
    @discardableResult
    public func check() throws -> Int32 {
        let r = wait()
        if r < 0 { throw RadosError(what, r) }
        return r
    }

    /// The object's version after the operation (valid after `wait`).
    public var version: UInt64 { rados_aio_get_version(completion) }
}

/// An asynchronous stat: size, modification time and version once complete.
// @unchecked Sendable: librados writes the result pointers before the completion completes; they are read only after wait().
public final class RadosStatCompletion: @unchecked Sendable {
    public let completion: RadosCompletion
    private let size = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let mtime = UnsafeMutablePointer<time_t>.allocate(capacity: 1)

    init(io: RadosIoctx, oid: String) throws {
        completion = try RadosCompletion(what: "cannot stat \(io.describe(oid))")
        size.pointee = 0
        mtime.pointee = 0
        let r = rados_aio_stat(io.handle, oid, completion.completion, size, mtime)
        if r < 0 {
            completion.forget(r)
            throw RadosError(completion.what, r)
        }
    }

    deinit {
        completion.wait()
        size.deallocate()
        mtime.deallocate()
    }

    /// The object's stat; nil if it does not exist.
    public func result() throws -> RadosObjectStat? {
        let r = completion.wait()
        if r == -ENOENT { return nil }
        if r < 0 { throw RadosError(completion.what, r) }
        return RadosObjectStat(size: size.pointee, mtime: Int64(mtime.pointee), version: completion.version)
    }
}

extension RadosCompletion {
    /// Marks a completion whose operation was never started.
    func forget(_ r: Int32) { waited = r }
}

/// What a stat says about an object.
public struct RadosObjectStat: Sendable, Equatable {
    public var size: UInt64
    /// Seconds since the epoch (the OSD's clock).
    public var mtime: Int64
    public var version: UInt64
}
