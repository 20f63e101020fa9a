// Progress: how far a long operation (backup, its verification, restore,
// verify, upgrade) is. The operations take a ProgressMeter as a parameter
// (nil: none) and report bytes done from their worker threads; the command
// line decides where it goes: on a terminal one live line (done/total,
// rate, ETA) redrawn at most 5 times a second and cleared at the end, with
// log lines printed above it; otherwise (a pipe, the scheduler's runs) a log
// line every 10 % or 60 s.
import Foundation
import Presentation
import Logging
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: every `var` is read and changed only under `lock`; `clock` is set in init (Date.init, or a test's clock).
public final class ProgressMeter: @unchecked Sendable {
    public enum Style: Sendable, Equatable {
        /// One live line on this descriptor (a terminal).
        case live(fd: Int32)
        /// Log lines at each 10 % and at least every `interval` seconds.
        case log(interval: TimeInterval)
    }

    public let style: Style
    let log: Logger
    let clock: () -> Date
    private let lock = NSLock()
    private var phase = ""
    private var total: Int64 = 0
    private var done: Int64 = 0
    private var started = Date()
    private var lastDraw = Date.distantPast
    private var lastLog = Date()
    private var lastDecile = 0
    private var shown = false

    /// The meter whose live line is on the terminal now (log lines on
    /// stderr clear it first and draw it again after).
    static let onTerminal = Locked<ProgressMeter?>(nil)

    public init(style: Style, log: Logger, clock: @escaping () -> Date = Date.init) {
        self.style = style
        self.log = log
        self.clock = clock
    }

    /// Starts a phase ("backup", "verify", "restore") of `total` bytes
    /// (more may be announced with `expect`).
    public func start(_ phase: String, total: Int64) {
        lock.lock()
        clearLocked()
        self.phase = phase
        self.total = max(0, total)
        done = 0
        started = clock()
        lastLog = started
        lastDecile = 0
        // The new phase shows at its first step.
        lastDraw = .distantPast
        lock.unlock()
        if case .live = style { ProgressMeter.onTerminal.with { $0 = self } }
    }

    /// Adds `bytes` to the phase's total.
    public func expect(_ bytes: Int64) {
        lock.lock()
        total += max(0, bytes)
        lock.unlock()
    }

    /// `bytes` more are done (from any thread).
    public func add(_ bytes: Int64) {
        lock.lock()
        defer { lock.unlock() }
        done += bytes
        let now = clock()
        switch style {
        case .live:
            if now.timeIntervalSince(lastDraw) >= 0.2 { drawLocked(now) }
        case .log(let interval):
            let decile = total > 0 ? Int(min(done, total) * 10 / total) : 0
            if decile > lastDecile || now.timeIntervalSince(lastLog) >= interval {
                lastDecile = max(lastDecile, decile)
                lastLog = now
                log.info("\(line(now, terminal: false))")
            }
        }
    }

    /// Ends the phase: the live line is cleared (the log style has said 100 %
    /// when it got there).
    public func finish() {
        lock.lock()
        clearLocked()
        lock.unlock()
        if case .live = style { ProgressMeter.onTerminal.with { if $0 === self { $0 = nil } } }
    }

    /// "backup: 1.20 GiB of 2.00 GiB (60 %), 512.0 MiB/s, ETA 2 s".
    func line(_ now: Date, terminal: Bool) -> String {
        let secs = max(now.timeIntervalSince(started), 0.001)
        let rate = Double(done) / secs
        var s = "\(phase): \(ByteFormat.flexible(done))"
        if total > 0 {
            let pct = Int(min(done, total) * 100 / total)
            s += " of \(ByteFormat.flexible(total)) (\(pct) %)"
        }
        s += ", \(ByteFormat.flexible(Int64(rate)))/s"
        if total > done, rate > 0 {
            s += ", ETA \(DurationFormat.age(Double(total - done) / rate))"
        }
        return s
    }

    private func drawLocked(_ now: Date) {
        guard case .live(let fd) = style else { return }
        lastDraw = now
        shown = true
        write(fd, "\r\u{1B}[K" + line(now, terminal: true))
    }

    private func clearLocked() {
        guard case .live(let fd) = style, shown else { return }
        shown = false
        write(fd, "\r\u{1B}[K")
    }

    private func write(_ fd: Int32, _ text: String) {
        var s = text
        s.withUTF8 { b in
            var off = 0
            while off < b.count {
                let r = Glibc.write(fd, b.baseAddress! + off, b.count - off)
                if r <= 0 { if errno == EINTR { continue }; break }
                off += r
            }
        }
    }

    /// Runs `body` (which writes a line on the terminal) with the live line
    /// taken away first and drawn again after.
    static func aroundTerminalWrite(_ body: () -> Void) {
        guard let m = onTerminal.get else { return body() }
        m.lock.lock()
        let wasShown = m.shown
        m.clearLocked()
        body()
        if wasShown { m.drawLocked(m.clock()) }
        m.lock.unlock()
    }
}
