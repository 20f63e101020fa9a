// StopSignals: termination signals (SIGTERM, SIGINT, SIGHUP) turned into bytes
// on a pipe (the self-pipe trick), so the main thread of a mount can wait for
// them, for children and for its FUSE loop in one place, whichever thread
// the kernel delivers a signal to.
import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class StopSignals {
    // nonisolated(unsafe): set in init before the handlers are installed; the signal handler only reads it.
    nonisolated(unsafe) private static var writeFD: Int32 = -1
    private let readFD: Int32

    public init(_ signals: [Int32] = [SIGTERM, SIGINT, SIGHUP]) throws {
        let p = try Spawn.pipe(nonblocking: true)
        readFD = p.read
        StopSignals.writeFD = p.write
        for s in signals {
            var sa = sigaction()
            sa.__sigaction_handler.sa_handler = { sig in
                var b = UInt8(truncatingIfNeeded: sig)
                _ = Glibc.write(StopSignals.writeFD, &b, 1)
            }
            sa.sa_flags = SA_RESTART
            sigemptyset(&sa.sa_mask)
            sigaction(s, &sa, nil)
        }
        signal(SIGPIPE, SIG_IGN)
    }

    /// Waits up to `milliseconds` for a signal; returns its number.
    public func wait(milliseconds: Int32) -> Int32? {
        var pfd = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        _ = poll(&pfd, 1, milliseconds)
        var b: UInt8 = 0
        return Glibc.read(readFD, &b, 1) == 1 ? Int32(b) : nil
    }

    public static func name(_ s: Int32) -> String {
        switch s {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        default: return "signal \(s)"
        }
    }
}
