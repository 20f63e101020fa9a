// Parallel: the worker pool idiom of the data path: N threads, each with its
// own workspace, pulling work items from a shared counter until done or
// until one of them fails; the first error is rethrown to the caller.
import Dispatch
import Foundation

public final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    public init(_ v: T) { value = v }
    public func with<R>(_ body: (inout T) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&value)
    }
    public var get: T { with { $0 } }
}

/// Carries a non-Sendable value to a thread that the caller waits for.
struct UnsafeSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

public enum Parallel {
    /// Worker threads to use: BACKY_THREADS, else the number of cores.
    public static var defaultThreads: Int {
        if let s = ProcessInfo.processInfo.environment["BACKY_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Runs `body(worker, item)` for items 0..<count on `threads` workers.
    /// `setup(worker)` creates per-worker state once. Stops early on error.
    public static func forEach<W>(count: Int, threads: Int, setup: (Int) -> W,
                                  _ body: (W, Int) throws -> Void) throws {
        if count == 0 { return }
        let n = max(1, min(threads, count))
        let next = Locked(0)
        let failure = Locked<Error?>(nil)
        withoutActuallyEscaping(setup) { setup in
            withoutActuallyEscaping(body) { body in
                let work: (Int) -> Void = { w in
                    let state = setup(w)
                    while true {
                        let i: Int? = next.with { v in
                            if v >= count { return nil }
                            v += 1
                            return v - 1
                        }
                        guard let item = i, failure.get == nil else { return }
                        do {
                            try body(state, item)
                        } catch {
                            failure.with { if $0 == nil { $0 = error } }
                            return
                        }
                    }
                }
                // Real threads (not the dispatch pool, which caps at the core
                // count) so I/O waits overlap with hashing and compression.
                let done = DispatchSemaphore(value: 0)
                let box = UnsafeSendableBox(work)
                for w in 1..<n {
                    let t = Thread { box.value(w); done.signal() }
                    t.stackSize = 1 << 20
                    t.start()
                }
                work(0)
                for _ in 1..<n { done.wait() }
            }
        }
        if let e = failure.get { throw e }
    }
}
