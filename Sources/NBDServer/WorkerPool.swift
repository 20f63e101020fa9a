// WorkerPool: the threads that read chunks (blocking file I/O, zstd,
// SHA-256) off the event loops. Each thread owns one ChunkWorkspace. Jobs
// for client requests run before read-ahead jobs.
import ChunkStore
import Foundation

// @unchecked Sendable: the queues, their heads and `stopping` are read and changed only under `cond`; `threads` only in init.
public final class WorkerPool: @unchecked Sendable {
    public enum Priority { case demand, prefetch }
    public typealias Job = (ChunkWorkspace) -> Void

    private let cond = NSCondition()
    private var demand: [Job] = []
    private var demandHead = 0
    private var prefetch: [Job] = []
    private var prefetchHead = 0
    private var stopping = false
    private var threads: [Thread] = []
    private let done = DispatchGroup()
    public let count: Int

    public init(threads n: Int) {
        count = max(1, n)
        for i in 0..<count {
            done.enter()
            let t = Thread { [self] in
                let ws = ChunkWorkspace()
                self.loop(ws)
                self.done.leave()
            }
            t.name = "backy-nbd-worker-\(i)"
            t.stackSize = 1 << 20
            threads.append(t)
            t.start()
        }
    }

    /// Read-ahead jobs waiting to run.
    public var queuedPrefetch: Int {
        cond.lock(); defer { cond.unlock() }
        return prefetch.count - prefetchHead
    }

    public func submit(_ priority: Priority = .demand, _ job: @escaping Job) {
        cond.lock()
        if stopping {
            cond.unlock()
            return
        }
        switch priority {
        case .demand: demand.append(job)
        case .prefetch: prefetch.append(job)
        }
        cond.signal()
        cond.unlock()
    }

    private func take() -> Job? {
        cond.lock(); defer { cond.unlock() }
        while true {
            if demandHead < demand.count {
                let j = demand[demandHead]
                demandHead += 1
                if demandHead > 256 && demandHead * 2 > demand.count {
                    demand.removeFirst(demandHead)
                    demandHead = 0
                }
                return j
            }
            if stopping { return nil }
            if prefetchHead < prefetch.count {
                let j = prefetch[prefetchHead]
                prefetchHead += 1
                if prefetchHead > 256 && prefetchHead * 2 > prefetch.count {
                    prefetch.removeFirst(prefetchHead)
                    prefetchHead = 0
                }
                return j
            }
            cond.wait()
        }
    }

    private func loop(_ ws: ChunkWorkspace) {
        while let job = take() {
            job(ws)
        }
    }

    /// Runs the queued demand jobs, drops read-ahead, and joins the threads.
    public func shutdown() {
        cond.lock()
        stopping = true
        prefetch.removeAll()
        prefetchHead = 0
        cond.broadcast()
        cond.unlock()
        done.wait()
    }
}
