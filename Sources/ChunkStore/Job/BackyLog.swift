// BackyLog: swift-log handlers for backy's logs. With `-l FILE`: lines
// "YYYY-MM-DD HH:MM:SS+00:00 [pid] LEVEL message" (UTC, the zone written
// out), appended, and the file
// reopened when logrotate moves it. Without: bare messages on stderr, so
// that `restore -` output on stdout is never mixed with log lines.
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: `fd`, `inode` and `device` are changed only in init and under `mutex` (write reopens a rotated file under it).
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
        // Not through a symlink (one planted as a job's backy.log could make
        // a root process append to any file), and not blocking on a FIFO.
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
        if fd < 0 {
            let e = errno
            if e == ELOOP { throw BackyError(.io, "cannot open log file \(path): it is a symlink", errno: e) }
            throw BackyError.posix("cannot open log file \(path)", e)
        }
        var st = stat()
        fstat(fd, &st)
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFCHR else {
            close(fd)
            fd = -1
            throw BackyError(.io, "cannot open log file \(path): not a regular file")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
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

    public init(sink: LogSink, level: Logger.Level) {
        self.sink = sink
        self.logLevel = level
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
        let line = "\(Timestamp.formatSeconds(Date()))+00:00 [\(getpid())] \(BackyLogHandler.levelName(level)) \(text)"
        if sink.isFile {
            sink.write(line)
        } else {
            if !BackyLog.fileOnlyMode.get && level >= BackyLog.terminalLevel.get {
                // Above a live progress line, which is drawn again after.
                ProgressMeter.aroundTerminalWrite {
                    sink.write(level >= .warning ? "\(BackyLogHandler.levelName(level)): \(text)" : text)
                }
            }
            BackyLog.jobLog.get?.write(line)
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
    /// The job's own log (`<job>/backy.log`), written in addition to stderr
    /// when no `-l` was given.
    static let jobLog = Locked<LogSink?>(nil)

    /// The lowest level printed on stderr (without `-l`); `-q` makes it
    /// `.error`, log files still get every line of the handler's level.
    static let terminalLevel = Locked<Logger.Level>(.trace)

    /// Installs the handler for the process. Call once, first thing.
    /// `quiet`: only warnings and errors at all (`status`, `find`);
    /// `errorsOnly` (`-q`): only errors on stderr, log files as usual.
    public static func bootstrap(logFile: String?, verbose: Bool, quiet: Bool = false, errorsOnly: Bool = false) throws {
        let level: Logger.Level = verbose ? .debug : (quiet ? .warning : .info)
        if errorsOnly { terminalLevel.with { $0 = .error } }
        let sink: LogSink
        if let logFile {
            sink = try LogSink(path: logFile)
        } else {
            sink = LogSink()
        }
        LoggingSystem.bootstrap { _ in BackyLogHandler(sink: sink, level: level) }
    }

    /// Also logs to `path` from now on (stderr stays). Returns false if the
    /// file cannot be opened (a job on read-only media): then nothing changes.
    @discardableResult
    public static func attachJobLog(_ path: String) -> Bool {
        guard let s = try? LogSink(path: path) else { return false }
        jobLog.with { $0 = s }
        return true
    }

    public static var hasJobLog: Bool { jobLog.get != nil }

    static let fileOnlyMode = Locked(false)

    /// Runs `body` with stderr muted, so its log lines reach only log files.
    public static func fileOnly(_ body: () -> Void) {
        fileOnlyMode.with { $0 = true }
        body()
        fileOnlyMode.with { $0 = false }
    }
}
