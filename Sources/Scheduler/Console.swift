// Console.swift — the scheduler's telnet console (reference §9, with 2.5's shell):
// banner `backy <version>` / `Ready.`, prompt `backy> `, commands `jobs [REGEX]`,
// `status`, `run JOB`, `runall`, `reload`, `help [CMD]`, `quit`; several commands
// per line separated by `;`, arguments split like a shell. Unknown commands and
// jobs get a message, never an error that ends the session. No login: it listens
// on loopback addresses by default.
//
// It speaks enough telnet for a real `telnet` client and plain enough text for
// `nc`: IAC negotiation is answered by refusing every option (DO → WONT,
// WILL → DONT), subnegotiations are skipped, IAC IAC is a literal 255, IP (the
// client's Ctrl-C) discards the current line; lines end with CR LF, CR NUL or LF.
// Output lines end with CR LF. When the client closes its sending side (nc -N),
// the rest of the input is answered and the connection closed.

import ChunkStore
import Foundation
import Logging
import NIOCore
import NIOPosix

/// What the console needs of the daemon.
public protocol ConsoleBackend: AnyObject, Sendable {
    func statusEntries(now: Date) -> [JobStatusEntry]
    func trigger(_ name: String) -> String
    func triggerAll() -> [String]
    func reload() -> String
}

extension SchedulerDaemon: ConsoleBackend {}

// MARK: - Commands

public enum ConsoleCommands {
    public static let prompt = "backy> "

    public static func banner(version: String) -> String {
        "backy \(version)\r\nReady.\r\n"
    }

    /// The result of one input line.
    public struct Reply: Equatable, Sendable {
        public var lines: [String]
        public var quit: Bool
    }

    static let help: [(String, String, String)] = [
        ("jobs", "jobs [REGEX]", "List the jobs (those whose name matches REGEX): SLA, status, last and next backup."),
        ("status", "status", "Count the jobs per status."),
        ("run", "run JOB", "Run JOB now (with the tags of its next run) instead of waiting for its deadline."),
        ("runall", "runall", "Run every waiting job now."),
        ("reload", "reload", "Re-read the configuration file: jobs added, removed or changed take effect at once."),
        ("help", "help [CMD]", "List the commands, or explain one."),
        ("quit", "quit", "Close the connection."),
    ]

    /// Executes one input line (possibly several `;`-separated commands).
    public static func execute(_ line: String, backend: ConsoleBackend, now: Date = Date()) -> Reply {
        var out: [String] = []
        let commands: [[String]]
        switch split(line) {
        case .success(let c): commands = c
        case .failure(let e): return Reply(lines: ["Syntax error: \(e.message)"], quit: false)
        }
        for words in commands where !words.isEmpty {
            let cmd = words[0]
            let args = Array(words.dropFirst())
            switch cmd {
            case "jobs":
                guard args.count <= 1 else { out.append("Usage: jobs [REGEX]"); continue }
                out += jobs(backend.statusEntries(now: now), filter: args.first)
            case "status":
                guard args.isEmpty else { out.append("Usage: status"); continue }
                out += statusTable(backend.statusEntries(now: now))
            case "run":
                guard args.count == 1 else { out.append("Usage: run JOB"); continue }
                out.append(backend.trigger(args[0]))
            case "runall":
                guard args.isEmpty else { out.append("Usage: runall"); continue }
                let msgs = backend.triggerAll()
                out += msgs.isEmpty ? ["No jobs configured."] : msgs
            case "reload":
                guard args.isEmpty else { out.append("Usage: reload"); continue }
                out.append(backend.reload())
            case "help", "?":
                if let topic = args.first {
                    if let h = help.first(where: { $0.0 == topic }) {
                        out += [h.1, "    " + h.2]
                    } else {
                        out.append("No help for \(topic): no such command.")
                    }
                } else {
                    out.append("Available commands:")
                    for h in help { out.append("  " + h.1.padding(toLength: 14, withPad: " ", startingAt: 0) + h.2) }
                }
            case "quit", "exit", "logout":
                out.append("Goodbye.")
                return Reply(lines: out, quit: true)
            default:
                out.append("\(cmd): command not found. Type help for the list of commands.")
            }
        }
        return Reply(lines: out, quit: false)
    }

    /// The `jobs` table (§9): sorted by job, " UTC" removed from times.
    public static func jobs(_ entries: [JobStatusEntry], filter: String?) -> [String] {
        var selected = entries
        if let filter {
            let re: NSRegularExpression
            do {
                re = try NSRegularExpression(pattern: filter)
            } catch {
                return ["Invalid regular expression: \(filter)"]
            }
            selected = entries.filter {
                re.firstMatch(in: $0.job, range: NSRange($0.job.startIndex..., in: $0.job)) != nil
            }
        }
        func time(_ s: String) -> String { s.hasSuffix(" UTC") ? String(s.dropLast(4)) : s }
        var t = TextTable(["Job", "SLA", "Status", "Last Backup (UTC)", "Last Tags", "Last Dur", "Next Backup (UTC)", "Next Tags"],
                          align: [.left, .left, .left, .left, .left, .right, .left, .left])
        // With restore drills configured, a column for the last one.
        let drills = selected.contains { $0.drill != "-" }
        if drills { t = TextTable(t.headers + ["Last Drill (UTC)"], align: t.align + [.left]) }
        for e in selected {
            var status = e.status.isEmpty ? "-" : e.status
            if e.failures > 0 { status += " (\(e.failures) failed)" }
            if e.problems != "-" { status += "; problems: " + (e.problems.count > 70 ? e.problems.prefix(69) + "…" : e.problems) }
            var row = [e.job, e.sla, status, time(e.lastTime), e.lastTags, e.lastDuration, time(e.nextTime), e.nextTags]
            if drills {
                row.append(e.drill == "-" ? "-" : e.lastDrill == "-" ? "none yet"
                           : "\(time(e.lastDrill)) \(e.lastDrillResult)\(e.drill == "TOO OLD" ? " (too old)" : "")")
            }
            t.add(row)
        }
        return t.render().components(separatedBy: "\n") + ["\(selected.count) jobs shown"]
    }

    /// The `status` table: jobs per status, sorted by status.
    public static func statusTable(_ entries: [JobStatusEntry]) -> [String] {
        var counts: [String: Int] = [:]
        for e in entries { counts[e.status.isEmpty ? "-" : e.status, default: 0] += 1 }
        var t = TextTable(["Status", "#"], align: [.left, .right])
        for s in counts.keys.sorted() { t.add([s, String(counts[s]!)]) }
        return t.render().components(separatedBy: "\n")
    }

    public struct SyntaxError: Error, Equatable { public let message: String }

    /// Splits a line into `;`-separated commands of shell-style words ('…', "…", \x).
    public static func split(_ line: String) -> Result<[[String]], SyntaxError> {
        var commands: [[String]] = []
        var words: [String] = []
        var word = ""
        var inWord = false
        var quote: Character?
        var escape = false
        for c in line {
            if escape {
                word.append(c); escape = false; inWord = true
                continue
            }
            if let q = quote {
                if c == q { quote = nil } else if c == "\\" && q == "\"" { escape = true } else { word.append(c) }
                continue
            }
            switch c {
            case "\\": escape = true; inWord = true
            case "'", "\"": quote = c; inWord = true
            case ";":
                if inWord { words.append(word); word = ""; inWord = false }
                commands.append(words); words = []
            case _ where c.isWhitespace:
                if inWord { words.append(word); word = ""; inWord = false }
            default:
                word.append(c); inWord = true
            }
        }
        if quote != nil { return .failure(SyntaxError(message: "unterminated quote")) }
        if escape { return .failure(SyntaxError(message: "trailing backslash")) }
        if inWord { words.append(word) }
        commands.append(words)
        return .success(commands)
    }
}

// MARK: - Telnet

/// Separates telnet commands from data and answers option negotiation.
public struct TelnetDecoder: Sendable {
    static let IAC: UInt8 = 255, DONT: UInt8 = 254, DO: UInt8 = 253, WONT: UInt8 = 252, WILL: UInt8 = 251
    static let SB: UInt8 = 250, SE: UInt8 = 240, IP: UInt8 = 244, AYT: UInt8 = 246, BRK: UInt8 = 243

    enum State: Sendable { case data, iac, option(UInt8), sub, subIAC }
    var state = State.data

    public init() {}

    public struct Output: Equatable, Sendable {
        /// Plain data bytes.
        public var data: [UInt8] = []
        /// Bytes to send back (negotiation answers).
        public var reply: [UInt8] = []
        /// Set when the client sent IP or BRK (its Ctrl-C); `data` then holds an ETX
        /// (0x03) at that point, which makes `LineAssembler` discard the current line.
        public var interrupt = false
    }

    public mutating func feed<S: Sequence>(_ bytes: S) -> Output where S.Element == UInt8 {
        var out = Output()
        for b in bytes {
            switch state {
            case .data:
                if b == Self.IAC { state = .iac } else { out.data.append(b) }
            case .iac:
                switch b {
                case Self.IAC: out.data.append(255); state = .data
                case Self.DO, Self.DONT, Self.WILL, Self.WONT: state = .option(b)
                case Self.SB: state = .sub
                case Self.IP, Self.BRK: out.interrupt = true; out.data.append(3); state = .data
                case Self.AYT: out.reply += Array("\r\n[yes]\r\n".utf8); state = .data
                default: state = .data  // NOP, DM, GA, EC, EL, AO, SE: nothing to do
                }
            case .option(let verb):
                if verb == Self.DO { out.reply += [Self.IAC, Self.WONT, b] }
                if verb == Self.WILL { out.reply += [Self.IAC, Self.DONT, b] }
                state = .data
            case .sub:
                if b == Self.IAC { state = .subIAC }
            case .subIAC:
                state = b == Self.SE ? .data : .sub
            }
        }
        return out
    }
}

/// Assembles input lines from data bytes: CR LF, CR NUL, CR or LF end a line;
/// backspace/DEL edit; Ctrl-C (ETX) discards the line; Ctrl-D on an empty line quits.
public struct LineAssembler: Sendable {
    public static let maxLine = 4096
    var buffer: [UInt8] = []
    var afterCR = false
    var overflow = false

    public init() {}

    public enum Event: Equatable, Sendable { case line(String), endOfInput, tooLong, interrupt }

    public mutating func feed(_ bytes: [UInt8]) -> [Event] {
        var events: [Event] = []
        for b in bytes {
            if afterCR {
                afterCR = false
                if b == 10 || b == 0 { continue }
            }
            switch b {
            case 13, 10:
                afterCR = b == 13
                if overflow { events.append(.tooLong); overflow = false } else { events.append(.line(String(decoding: buffer, as: UTF8.self))) }
                buffer.removeAll(keepingCapacity: true)
            case 8, 127:
                if !buffer.isEmpty { buffer.removeLast() }
            case 3:
                buffer.removeAll(); overflow = false
                events.append(.interrupt)
            case 4:
                if buffer.isEmpty { events.append(.endOfInput) }
            case 9:
                buffer.append(32)
            case 0..<32:
                continue
            default:
                if buffer.count >= Self.maxLine { overflow = true; buffer.removeAll() }
                buffer.append(b)
            }
        }
        return events
    }

    /// Text typed after the last line end (when the client stops sending).
    public mutating func rest() -> String? {
        defer { buffer.removeAll() }
        return buffer.isEmpty || overflow ? nil : String(decoding: buffer, as: UTF8.self)
    }

    public mutating func discard() { buffer.removeAll(); overflow = false }
}

// MARK: - Server

final class ConsoleHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let backend: ConsoleBackend
    let version: String
    var telnet = TelnetDecoder()
    var lines = LineAssembler()
    var closing = false

    init(backend: ConsoleBackend, version: String) {
        self.backend = backend
        self.version = version
    }

    private func send(_ context: ChannelHandlerContext, _ text: String) {
        send(context, Array(text.utf8))
    }

    private func send(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        var buf = context.channel.allocator.buffer(capacity: bytes.count)
        buf.writeBytes(bytes)
        context.write(wrapOutboundOut(buf), promise: nil)
    }

    func channelActive(context: ChannelHandlerContext) {
        send(context, ConsoleCommands.banner(version: version) + ConsoleCommands.prompt)
        context.flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var buf = unwrapInboundIn(data)
        let bytes = buf.readBytes(length: buf.readableBytes) ?? []
        let t = telnet.feed(bytes)
        if !t.reply.isEmpty { send(context, t.reply) }
        for event in lines.feed(t.data) {
            switch event {
            case .line(let text):
                handle(context, text)
            case .tooLong:
                send(context, "Line too long (at most \(LineAssembler.maxLine) bytes).\r\n" + ConsoleCommands.prompt)
            case .endOfInput:
                handle(context, "quit")
            case .interrupt:
                send(context, "\r\n" + ConsoleCommands.prompt)
            }
            if closing { break }
        }
        context.flush()
        // A client that sends commands without reading the answers is not read
        // from until it catches up (answers are not buffered without bound).
        if !context.channel.isWritable { context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
        context.fireChannelWritabilityChanged()
    }

    private func handle(_ context: ChannelHandlerContext, _ text: String) {
        let reply = ConsoleCommands.execute(text, backend: backend)
        var out = reply.lines.map { $0 + "\r\n" }.joined()
        if reply.quit {
            closing = true
            var buf = context.channel.allocator.buffer(capacity: out.utf8.count)
            buf.writeString(out)
            context.writeAndFlush(wrapOutboundOut(buf)).whenComplete { _ in context.close(promise: nil) }
            return
        }
        out += ConsoleCommands.prompt
        send(context, out)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            // The client has sent everything (nc -N): answer a last unterminated line, then close.
            if !closing, let rest = lines.rest(), !rest.trimmingCharacters(in: .whitespaces).isEmpty {
                handle(context, rest)
            }
            if !closing {
                closing = true
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                    context.close(promise: nil)
                }
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// The console's listeners: one per address, one event loop for all clients.
public final class ConsoleServer: @unchecked Sendable {
    let backend: ConsoleBackend
    let log: Logger
    let version: String
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channels: [Channel] = []

    public init(backend: ConsoleBackend, log: Logger, version: String = SchedulerDaemon.version) {
        self.backend = backend
        self.log = log
        self.version = version
    }

    /// Listens on every address; failures are logged (the scheduler keeps running).
    /// Returns the number of listening addresses.
    @discardableResult
    public func start(addresses: [String], port: Int) -> Int {
        let backend = self.backend
        let version = self.version
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConsoleHandler(backend: backend, version: version))
                }
            }
        for addr in addresses {
            log.info("starting telnet server on \(addr):\(port)")
            do {
                channels.append(try bootstrap.bind(host: addr, port: port).wait())
            } catch {
                log.error("cannot listen on \(addr):\(port): \(error)")
            }
        }
        return channels.count
    }

    public func stop() {
        for c in channels { try? c.close().wait() }
        channels.removeAll()
        try? group.syncShutdownGracefully()
    }
}
