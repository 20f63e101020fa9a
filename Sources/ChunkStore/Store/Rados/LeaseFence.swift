// LeaseFence: a backup the scheduler runs under a job's lease (docs/rados.md,
// "Leases") learns through an inherited pipe until when that lease is
// certainly held: after each renewal the scheduler writes one line
// "UNTIL DURATION\n" (CLOCK_BOOTTIME seconds, the lease's duration), and
// the RADOS backend refuses to write a map or a revision unless at least a
// third of the duration is left. A scheduler that died or stalled sends no
// more lines, so its backup stops before it commits anything once the lease
// may lapse; what it was told stays true (the scheduler's view of "held"
// ends no later than the OSD's), so it may commit until then.
import Foundation
import Rados
#if canImport(Glibc)
import Glibc
#endif

public final class LeaseFence: @unchecked Sendable {
    /// The process's fence (set once by `backy backup --lease-fd`).
    public static let current = Locked<LeaseFence?>(nil)

    private let state = Locked<(until: Double, duration: Double, closed: Bool)>((0, 0, false))
    private let fd: Int32

    private let onClosed: @Sendable () -> Void

    /// Starts reading lines from `fd` on a thread of its own; `onClosed`
    /// runs when the scheduler's end closes (it died: stop the run).
    public init(fd: Int32, onClosed: @escaping @Sendable () -> Void) {
        self.fd = fd
        self.onClosed = onClosed
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let t = Thread { [self] in readLoop() }
        t.name = "backy-lease-fence"
        t.start()
    }

    /// Installs a fence reading `fd` for this process.
    public static func install(fd: Int32, onClosed: @escaping @Sendable () -> Void) {
        let f = LeaseFence(fd: fd, onClosed: onClosed)
        current.with { $0 = f }
    }

    private func readLoop() {
        var buf = [UInt8](repeating: 0, count: 512)
        var line: [UInt8] = []
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            for b in buf[0..<n] {
                if b == 10 {
                    take(String(decoding: line, as: UTF8.self))
                    line = []
                } else if line.count < 256 {
                    line.append(b)
                }
            }
        }
        // No more word from the scheduler: nothing is committed from now on.
        state.with { $0.closed = true }
        close(fd)
        onClosed()
    }

    /// Takes one line "UNTIL DURATION"; malformed lines are ignored (they
    /// can only make the fence stricter: nothing counts until a good one).
    func take(_ line: String) {
        let parts = line.split(separator: " ")
        guard parts.count == 2, let until = Double(parts[0]), let d = Double(parts[1]), until.isFinite, d > 0, d.isFinite else { return }
        state.with { s in
            if until > s.until { s.until = until }
            s.duration = d
        }
    }

    /// Seconds the lease is certainly held from now (0 if never told).
    public var secondsLeft: Double {
        let s = state.with { $0 }
        return max(0, s.until - LeaseClock.now())
    }

    /// Throws unless the lease is certain for at least a third of its
    /// duration more.
    public func check(_ what: @autoclosure () -> String) throws {
        let s = state.with { $0 }
        let left = s.until - LeaseClock.now()
        if s.closed || s.duration <= 0 || left < s.duration / 3 {
            throw BackyError(.locked, "the scheduler's lease on this job may lapse (\(String(format: "%.1f", max(0, left))) s left of \(String(format: "%.0f", s.duration)) s\(s.closed ? ", the scheduler is gone" : "")): not writing \(what())")
        }
    }

    /// Checks the process's fence, if it has one.
    public static func checkCurrent(_ what: @autoclosure () -> String) throws {
        guard let f = current.with({ $0 }) else { return }
        try f.check(what())
    }
}
