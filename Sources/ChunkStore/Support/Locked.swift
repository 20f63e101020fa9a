// Locked: a value behind a mutex, read and changed only inside `with`.
import Foundation

public final class Locked<T> {
    private let lock = NSLock()
    private var value: T
    public init(_ v: T) { value = v }
    public func with<R>(_ body: (inout T) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&value)
    }
    public var get: T { with { $0 } }
}

// @unchecked Sendable: `value` is read and changed only inside `with`, under
// `lock`; only for Sendable values, as what `with` and `get` hand out crosses threads.
extension Locked: @unchecked Sendable where T: Sendable {}
