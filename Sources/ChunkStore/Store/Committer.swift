// Committer: the threads that make the chunks a backup's workers wrote
// visible (the directory backend: fsync and rename each chunk file), so the
// workers go on hashing and compressing while the disk flushes.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Threads that commit the chunks the workers wrote. At most `limit` puts
/// wait; a failure is reported by the next `submit` or by `finish`, and
/// every put after it is abandoned.
// @unchecked Sendable: the queue, counters, failure, `stopping` and `threads` are read and changed only under `cond`.
final class Committer: @unchecked Sendable {
    private let cond = NSCondition()
    private var queue: [PendingPut] = []
    private var busy = 0
    private var failure: Error?
    private var stopping = false
    private var threads: [pthread_t] = []
    private let limit: Int

    init(threads n: Int = 2, limit: Int = 16) {
        self.limit = limit
        for _ in 0..<n {
            var t = pthread_t()
            let box = Unmanaged.passRetained(self)
            if pthread_create(&t, nil, { arg in
                let c = Unmanaged<Committer>.fromOpaque(arg!).takeRetainedValue()
                c.loop()
                return nil
            }, box.toOpaque()) == 0 {
                threads.append(t)
            } else {
                box.release()
            }
        }
    }

    private func loop() {
        while true {
            cond.lock()
            while queue.isEmpty && !stopping { cond.wait() }
            if queue.isEmpty && stopping { cond.unlock(); return }
            let p = queue.removeFirst()
            busy += 1
            let failed = failure != nil
            cond.unlock()
            var err: Error?
            if failed {
                p.abandon()
            } else {
                do { try p.commit() } catch { err = error }
            }
            cond.lock()
            busy -= 1
            if let err, failure == nil { failure = err }
            cond.broadcast()
            cond.unlock()
        }
    }

    func submit(_ p: PendingPut) throws {
        cond.lock()
        defer { cond.unlock() }
        if threads.isEmpty {
            cond.unlock()
            defer { cond.lock() }
            try p.commit()
            return
        }
        while queue.count >= limit && failure == nil { cond.wait() }
        if let f = failure {
            p.abandon()
            throw f
        }
        queue.append(p)
        cond.broadcast()
    }

    /// Waits until every submitted file is committed; rethrows a failure.
    func finish() throws {
        cond.lock()
        while !queue.isEmpty || busy > 0 { cond.wait() }
        let f = failure
        cond.unlock()
        if let f { throw f }
    }

    /// Stops the threads (after abandoning anything left after a failure).
    func stop() {
        cond.lock()
        stopping = true
        if failure == nil && !queue.isEmpty { failure = BackyError(.other, "stopped") }
        cond.broadcast()
        cond.unlock()
        for t in threads { pthread_join(t, nil) }
        threads = []
    }
}
