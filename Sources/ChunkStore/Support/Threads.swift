// Threads: runs a body on N real threads (the caller's is one of them) and
// joins them: the data path's I/O waits overlap, which the dispatch pool
// (capped at the core count) would not allow.
import Foundation

/// Runs `body(0..<count)` on `count` threads (the caller's thread is one
/// of them) and joins them all before returning. Real threads, not the
/// dispatch pool (which caps at the core count), so I/O waits overlap.
public enum Threads {
    private final class Start {
        let body: (Int) -> Void
        let index: Int
        init(_ body: @escaping (Int) -> Void, _ index: Int) { self.body = body; self.index = index }
    }

    /// `body` runs on several threads at once but is not `@Sendable` (the
    /// data path passes closures over buffers whose slots each thread
    /// writes apart, and state behind `Locked`): the caller answers for
    /// what it captures.
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
