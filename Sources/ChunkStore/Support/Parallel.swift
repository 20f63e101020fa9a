// Parallel: the worker pool idiom of the data path: N threads, each with its
// own workspace, pulling work items from a shared counter until done or
// until one of them fails; the first error is rethrown to the caller.
import Foundation

public enum Parallel {
    /// The number of cores: the default number of workers
    /// (`DataPathOptions.threads`).
    public static var cores: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

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
