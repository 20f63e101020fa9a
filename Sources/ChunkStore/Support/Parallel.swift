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

/// Runs `body(0..<count)` on `count` threads (the caller's thread is one
/// of them) and joins them all before returning. Real threads, not the
/// dispatch pool (which caps at the core count), so I/O waits overlap.
public enum Threads {
    private final class Start {
        let body: (Int) -> Void
        let index: Int
        init(_ body: @escaping (Int) -> Void, _ index: Int) { self.body = body; self.index = index }
    }

    public static func run(count: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            var threads: [pthread_t] = []
            var starts: [Unmanaged<Start>] = []
            for w in 1..<max(1, count) {
                let start = Unmanaged.passRetained(Start(body, w))
                var attr = pthread_attr_t()
                pthread_attr_init(&attr)
                pthread_attr_setstacksize(&attr, 1 << 20)
                var t = pthread_t()
                let rc = pthread_create(&t, &attr, { arg in
                    let s = Unmanaged<Start>.fromOpaque(arg!).takeUnretainedValue()
                    s.body(s.index)
                    return nil
                }, start.toOpaque())
                pthread_attr_destroy(&attr)
                if rc == 0 {
                    threads.append(t)
                    starts.append(start)
                } else {
                    start.release()
                    body(w)  // no thread: do the work here
                }
            }
            body(0)
            for t in threads { pthread_join(t, nil) }
            for s in starts { s.release() }
        }
    }
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
                Threads.run(count: n, work)
            }
        }
        if let e = failure.get { throw e }
    }
}
