// BackyLog: swift-log handlers for backy's logs. With `-l FILE`: lines
// "YYYY-MM-DD HH:MM:SS [pid] LEVEL message" in UTC, appended, and the file
// reopened when logrotate moves it. Without: bare messages on stderr, so
// that `restore -` output on stdout is never mixed with log lines.
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

public final class LogSink: @unchecked Sendable {
    private let mutex = NSLock()
    private let path: String?
    private var fd: Int32
    private var inode: ino_t = 0
    private var device: dev_t = 0
    public let alsoStderr: Bool

    /// A sink writing to stderr.
    public init() {
        path = nil
        fd = 2
        alsoStderr = false
    }

    /// A sink appending to `path` (created if needed). With `alsoStderr`,
    /// warnings and errors are also printed on stderr.
    public init(path: String, alsoStderr: Bool = false) throws {
        self.path = path
        self.alsoStderr = alsoStderr
        fd = -1
        try reopen()
    }

    private func reopen() throws {
        guard let path else { return }
        if fd >= 0 { close(fd) }
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if fd < 0 { throw BackyError.posix("cannot open log file \(path)") }
        var st = stat()
        fstat(fd, &st)
        inode = st.st_ino
        device = st.st_dev
    }

    /// Reopens the file if it was moved or removed (log rotation).
    private func checkRotation() {
        guard let path else { return }
        if let st = Posix.status(path), st.st_ino == inode, st.st_dev == device { return }
        try? reopen()
    }

    public var isFile: Bool { path != nil }

    public func write(_ line: String) {
        mutex.lock(); defer { mutex.unlock() }
        checkRotation()
        var s = line
        if !s.hasSuffix("\n") { s += "\n" }
        s.withUTF8 { b in
            var off = 0
            while off < b.count {
                let r = Glibc.write(fd, b.baseAddress! + off, b.count - off)
                if r <= 0 { if errno == EINTR { continue }; break }
                off += r
            }
        }
    }
}

public struct BackyLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let sink: LogSink
    private let stderrSink: LogSink?

    public init(sink: LogSink, level: Logger.Level, stderrSink: LogSink? = nil) {
        self.sink = sink
        self.logLevel = level
        self.stderrSink = stderrSink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level = event.level
        let extra = event.metadata
        var text = event.message.description
        var all = metadata
        if let extra { all.merge(extra) { $1 } }
        if !all.isEmpty {
            text += " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        if sink.isFile {
            let ts = Timestamp.formatSeconds(Date())
            sink.write("\(ts) [\(getpid())] \(BackyLogHandler.levelName(level)) \(text)")
            if let e = stderrSink, level >= .warning { e.write(text) }
        } else {
            sink.write(level >= .warning ? "\(BackyLogHandler.levelName(level)): \(text)" : text)
        }
    }

    static func levelName(_ l: Logger.Level) -> String {
        switch l {
        case .trace: return "TRACE"
        case .debug: return "DEBUG"
        case .info: return "INFO"
        case .notice: return "INFO"
        case .warning: return "WARNING"
        case .error: return "ERROR"
        case .critical: return "CRITICAL"
        }
    }
}

public enum BackyLog {
    /// Installs the handler for the process. Call once, first thing.
    public static func bootstrap(logFile: String?, verbose: Bool, quiet: Bool = false) throws {
        let level: Logger.Level = verbose ? .debug : (quiet ? .warning : .info)
        let sink: LogSink
        let errSink: LogSink? = nil
        if let logFile {
            sink = try LogSink(path: logFile)
        } else {
            sink = LogSink()
        }
        LoggingSystem.bootstrap { _ in BackyLogHandler(sink: sink, level: level, stderrSink: errSink) }
    }
}
