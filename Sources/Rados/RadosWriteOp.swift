// RadosWriteOp: a compound write operation on one object — guards
// (exists, version, xattr comparison, "I still hold this lock") and
// writes (create, write_full, append, xattrs, remove) that the OSD applies
// all together or not at all. This is how backy fences: a write that must
// only happen while its writer holds a lease carries `assertLocked`, and a
// delete that must only happen if nobody touched the object since it was
// looked at carries `assertVersion`.
//
// Data and xattr values are copied when added (librados copies them into
// its buffer list), so the caller's buffers may be reused at once. An op is
// used once.
import CRBD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: built step by step by one thread, then submitted once; librados writes `slots` only until the op completes, read after.
public final class RadosWriteOp: @unchecked Sendable {
    let op: rados_write_op_t
    /// Result slots of exec steps; librados writes them when the op completes.
    private var slots: [UnsafeMutablePointer<Int32>] = []
    private(set) var steps: [String] = []

    public enum Comparison: UInt8, Sendable {
        case equal = 1, notEqual = 2, greater = 3, greaterOrEqual = 4, less = 5, lessOrEqual = 6
    }

    public init() {
        op = rados_create_write_op()
    }

    deinit {
        rados_release_write_op(op)
        for s in slots { s.deallocate() }
    }

    /// Fails the op with ENOENT unless the object exists.
    @discardableResult
    public func assertExists() -> Self {
        rados_write_op_assert_exists(op)
        steps.append("assert-exists")
        return self
    }

    /// Fails the op (ERANGE: newer, EOVERFLOW: older) unless the object's
    /// version is exactly `version` (ENOENT if it is gone).
    @discardableResult
    public func assertVersion(_ version: UInt64) -> Self {
        rados_write_op_assert_version(op, version)
        steps.append("assert-version")
        return self
    }

    /// Fails the op with ECANCELED unless xattr `name` compares as asked
    /// with `value` (a missing xattr compares as empty).
    @discardableResult
    public func compareXattr(_ name: String, _ comparison: Comparison, _ value: [UInt8]) -> Self {
        value.withUnsafeBufferPointer { b in
            rados_write_op_cmpxattr(op, name, comparison.rawValue,
                                    UnsafeRawPointer(b.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self),
                                    b.count)
        }
        steps.append("compare-xattr")
        return self
    }

    @discardableResult
    public func compareXattr(_ name: String, _ comparison: Comparison, _ value: String) -> Self {
        compareXattr(name, comparison, Array(value.utf8))
    }

    /// Creates the object; `exclusive`: fail with EEXIST if it exists.
    @discardableResult
    public func create(exclusive: Bool) -> Self {
        rados_write_op_create(op, exclusive ? Int32(LIBRADOS_CREATE_EXCLUSIVE) : Int32(LIBRADOS_CREATE_IDEMPOTENT), nil)
        steps.append("create")
        return self
    }

    /// Replaces the object's data with `bytes` (creates the object).
    @discardableResult
    public func writeFull(_ bytes: UnsafeRawBufferPointer) -> Self {
        withBase(bytes) { rados_write_op_write_full(op, $0, bytes.count) }
        steps.append("write-full")
        return self
    }

    @discardableResult
    public func writeFull(_ bytes: [UInt8]) -> Self {
        bytes.withUnsafeBytes { writeFull($0) }
    }

    /// Appends `bytes` to the object's data (creates the object).
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer) -> Self {
        withBase(bytes) { rados_write_op_append(op, $0, bytes.count) }
        steps.append("append")
        return self
    }

    @discardableResult
    public func append(_ bytes: [UInt8]) -> Self {
        bytes.withUnsafeBytes { append($0) }
    }

    @discardableResult
    public func setXattr(_ name: String, _ value: [UInt8]) -> Self {
        value.withUnsafeBufferPointer { b in
            rados_write_op_setxattr(op, name,
                                    UnsafeRawPointer(b.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self),
                                    b.count)
        }
        steps.append("set-xattr")
        return self
    }

    @discardableResult
    public func setXattr(_ name: String, _ value: String) -> Self { setXattr(name, Array(value.utf8)) }

    @discardableResult
    public func removeXattr(_ name: String) -> Self {
        rados_write_op_rmxattr(op, name)
        steps.append("remove-xattr")
        return self
    }

    /// Removes the object.
    @discardableResult
    public func remove() -> Self {
        rados_write_op_remove(op)
        steps.append("remove")
        return self
    }

    /// Calls object class method `cls.method` with `input`; its failure
    /// fails the op with the method's error.
    @discardableResult
    public func exec(_ cls: String, _ method: String, _ input: [UInt8]) -> Self {
        let slot = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        slot.pointee = 0
        slots.append(slot)
        input.withUnsafeBufferPointer { b in
            rados_write_op_exec(op, cls, method,
                                UnsafeRawPointer(b.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self),
                                b.count, slot)
        }
        steps.append("\(cls).\(method)")
        return self
    }

    /// Fails the op with EBUSY unless this client holds lock `name` on the
    /// op's object with `cookie` (and `kind`, `tag`) right now — an expired
    /// lock counts as not held. The fencing guard (cls_lock assert_locked).
    @discardableResult
    public func assertLocked(name: String, kind: RadosLockKind, cookie: String, tag: String = "") -> Self {
        exec("lock", "assert_locked", ClsLockEncoding.assertOp(name: name, kind: kind, cookie: cookie, tag: tag))
    }

    /// Fails the op unless `lease` is still held (its object must be the
    /// op's object).
    @discardableResult
    public func assertHeld(_ lease: RadosLease) -> Self {
        assertLocked(name: lease.name, kind: lease.kind, cookie: lease.cookie, tag: lease.tag)
    }
}

/// Calls `body` with the bytes' address as a C string pointer (a valid
/// one-byte buffer when there are no bytes).
private func withBase(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafePointer<CChar>) -> Void) {
    if let b = bytes.baseAddress {
        body(b.assumingMemoryBound(to: CChar.self))
    } else {
        var zero: CChar = 0
        withUnsafePointer(to: &zero) { body($0) }
    }
}

/// Flags for operations (LIBRADOS_OPERATION_*).
public struct RadosOpFlags: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// On a full cluster: fail at once (ENOSPC/EDQUOT) instead of waiting.
    public static let fullTry = RadosOpFlags(rawValue: Int32(LIBRADOS_OPERATION_FULL_TRY))
    /// On a full cluster: do it anyway (deletes, which free space).
    public static let fullForce = RadosOpFlags(rawValue: Int32(LIBRADOS_OPERATION_FULL_FORCE))
}
