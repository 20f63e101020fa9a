// ReadProgress: how the server tells that a client reads its replies, for
// the reply budget's order (ReplyBudget). A reply written to the socket
// proves nothing: the kernel takes megabytes (a 4 MiB send buffer on
// loopback) for a client that never reads. What counts is what the client's
// side acknowledged (TCP_INFO's tcpi_bytes_acked), which cannot grow by more
// than its receive buffer unless it reads: each further 256 KiB
// acknowledged marks the connection a reader for a second. Sampled when a
// reply has been written, and once more shortly after while the count grows
// (acknowledgements lag the write). Where TCP_INFO is not there (Unix
// sockets, whose kernel buffer is only a few hundred KiB), a written reply
// counts.
import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

struct ReadProgress {
    /// Acknowledged bytes that mark a reader: more than a client that does
    /// not read can take (a new connection's receive buffer is 128 KiB,
    /// tcp_rmem; autotuning grows it only while the client reads).
    static let step: UInt64 = 256 << 10

    private var ackedAtMark: UInt64 = 0
    private var lastAcked: UInt64 = 0
    /// TCP_INFO failed on this socket: written replies count instead.
    private(set) var unsupported = false
    /// A second sample is scheduled.
    var resampling = false

    /// A sample of the acknowledged bytes (nil: TCP_INFO failed): whether
    /// the connection now counts as a reader, and whether to look again
    /// shortly (the count grew, not yet by a step).
    mutating func sampled(acked: UInt64?) -> (reader: Bool, again: Bool) {
        guard let acked else {
            unsupported = true
            return (true, false)
        }
        defer { lastAcked = acked }
        if acked >= ackedAtMark + Self.step {
            ackedAtMark = acked
            return (true, false)
        }
        return (false, acked > lastAcked)
    }

    /// The head of Linux's struct tcp_info up to tcpi_bytes_acked (offset
    /// 120; glibc's declaration stops before it). The kernel fills what it
    /// has; an old kernel leaves the rest zero.
    struct TCPInfoHead: Sendable {
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                    UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var bytesAcked: UInt64 { UInt64(littleEndian: words.15) }
    }
}

extension NBDConnection {
    /// A reply was written: samples what the client acknowledged and tells
    /// the reply budget when it shows the client reads.
    func checkReading() {
        // Writes fail when the connection closes: that proves nothing.
        if closed { return }
        if progress.unsupported {
            core.budget.reads(id)
            return
        }
        guard let provider = context.channel as? SocketOptionProvider else {
            _ = progress.sampled(acked: nil)
            core.budget.reads(id)
            return
        }
        let f: EventLoopFuture<ReadProgress.TCPInfoHead> =
            provider.unsafeGetSocketOption(level: SocketOptionLevel(IPPROTO_TCP), name: SocketOptionName(TCP_INFO))
        f.assumeIsolated().whenComplete { r in
            if self.closed { return }
            let s = self.progress.sampled(acked: try? r.get().bytesAcked)
            if s.reader { self.core.budget.reads(self.id) }
            if s.again && !self.progress.resampling {
                self.progress.resampling = true
                self.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(20)) {
                    self.progress.resampling = false
                    self.checkReading()
                }
            }
        }
    }
}
