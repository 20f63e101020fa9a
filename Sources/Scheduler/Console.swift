// Console.swift — the scheduler's telnet console (README.md, "The console"; backy 2.4's commands with 2.5's shell):
// banner `backy <version>` / `Ready.`, prompt `backy> `, commands `jobs [--json] [REGEX]`,
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
//
// Limits, so that no client can stall another: at most `maxConnections`
// clients (a new one takes the slot of one idle for 10 s, otherwise it is
// told "Too many connections" and closed; refusals are logged once per
// burst); commands run one at a time per client on one worker queue shared
// round-robin by all clients, never on the event loop; a client's next
// command runs only after its last answer was written out (a client that
// does not read is not read from); `jobs REGEX` uses a matcher without
// backtracking (JobPattern). Besides TCP (`telnet-addrs`) the console can
// listen on a Unix socket (`console-socket`, mode 0660, `console-socket-group`).

import ChunkStore
import Foundation
import Logging
import NIOCore
import NIOPosix
import Presentation
import ServerSupport

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
        ("jobs", "jobs [--json] [REGEX]", "List the jobs (those whose name matches REGEX): SLA, status, last and next backup, the last error of a failing job. --json: one line of JSON, a list with the status file's fields per job."),
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
            let r = run(words, backend: backend, now: now)
            out += r.lines
            if r.quit { return Reply(lines: out, quit: true) }
        }
        return Reply(lines: out, quit: false)
    }

    /// Executes one command (its words, not empty).
    public static func run(_ words: [String], backend: ConsoleBackend, now: Date = Date()) -> Reply {
        var out: [String] = []
        let cmd = words[0]
        let args = Array(words.dropFirst())
        switch cmd {
        case "jobs":
            let json = args.first == "--json"
            let rest = json ? Array(args.dropFirst()) : args
            guard rest.count <= 1 else { out.append("Usage: jobs [--json] [REGEX]"); break }
            out += json ? jobsJSON(backend.statusEntries(now: now), filter: rest.first)
                        : jobs(backend.statusEntries(now: now), filter: rest.first)
        case "status":
            guard args.isEmpty else { out.append("Usage: status"); break }
            out += statusTable(backend.statusEntries(now: now))
        case "run":
            guard args.count == 1 else { out.append("Usage: run JOB"); break }
            out.append(backend.trigger(args[0]))
        case "runall":
            guard args.isEmpty else { out.append("Usage: runall"); break }
            let msgs = backend.triggerAll()
            out += msgs.isEmpty ? ["No jobs configured."] : msgs
        case "reload":
            guard args.isEmpty else { out.append("Usage: reload"); break }
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
        return Reply(lines: out, quit: false)
    }

    /// The `jobs` table: sorted by job, " UTC" removed from times.
    /// REGEX is searched in the job name (like Python's re.search) by a
    /// matcher without backtracking.
    public static func jobs(_ entries: [JobStatusEntry], filter: String?) -> [String] {
        let selected: [JobStatusEntry]
        switch select(entries, filter: filter) {
        case .success(let s): selected = s
        case .failure(let e): return [e.message]
        }
        func time(_ s: String) -> String { s.hasSuffix(" UTC") ? String(s.dropLast(4)) : s }
        var t = TextTable(["Job", "SLA", "Status", "Last Backup (UTC)", "Last Tags", "Last Dur", "Next Backup (UTC)", "Next Tags"],
                          align: [.left, .left, .left, .left, .left, .right, .left, .left])
        // With restore drills configured, a column for the last one.
        let drills = selected.contains { $0.drill != "-" }
        if drills { t = TextTable(t.headers + ["Last Drill (UTC)"], align: t.align + [.left]) }
        // With RADOS jobs, the node that runs or last ran each.
        let nodes = selected.contains { $0.node != "-" }
        if nodes { t = TextTable(t.headers + ["Node"], align: t.align + [.left]) }
        for e in selected {
            var status = e.status.isEmpty ? "-" : e.status
            if e.failures > 0 { status += " (\(e.failures) failed)" }
            if e.problems != "-" { status += "; problems: " + (e.problems.count > 70 ? e.problems.prefix(69) + "…" : e.problems) }
            if e.lastError != "-" { status += "; last error: " + (e.lastError.count > 70 ? e.lastError.prefix(69) + "…" : e.lastError) }
            var row = [e.job, e.sla, status, time(e.lastTime), e.lastTags, e.lastDuration, time(e.nextTime), e.nextTags]
            if drills {
                row.append(e.drill == "-" ? "-" : e.lastDrill == "-" ? "none yet"
                           : "\(time(e.lastDrill)) \(e.lastDrillResult)\(e.drill == "TOO OLD" ? " (too old)" : "")")
            }
            if nodes { row.append(e.node) }
            t.add(row)
        }
        return t.render().components(separatedBy: "\n") + ["\(selected.count) jobs shown"]
    }

    /// The entries whose job name matches `filter` (a JobPattern), or the
    /// message for a bad or too expensive pattern.
    static func select(_ entries: [JobStatusEntry], filter: String?) -> Result<[JobStatusEntry], SyntaxError> {
        guard let filter else { return .success(entries) }
        let re: JobPattern
        do {
            re = try JobPattern(filter)
        } catch let e as JobPatternError {
            return .failure(SyntaxError(message: "Invalid regular expression: \(filter) (\(e.description))"))
        } catch {
            return .failure(SyntaxError(message: "Invalid regular expression: \(filter)"))
        }
        let deadline = Date().addingTimeInterval(1)
        do {
            return .success(try entries.filter { e in
                try re.matches(e.job, budget: max(0.001, deadline.timeIntervalSinceNow))
            })
        } catch {
            return .failure(SyntaxError(message: "Regular expression too expensive: \(filter)"))
        }
    }

    /// `jobs --json`: one line, a JSON list of the jobs with the status
    /// file's fields (texts and numbers; absent values are null).
    public static func jobsJSON(_ entries: [JobStatusEntry], filter: String?) -> [String] {
        let selected: [JobStatusEntry]
        switch select(entries, filter: filter) {
        case .success(let s): selected = s
        case .failure(let e): return [e.message]
        }
        let list = selected.map { StatusFile.jsonObject($0) }
        guard let data = try? JSONSerialization.data(withJSONObject: list, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return ["[]"]
        }
        return [String(decoding: data, as: UTF8.self)]
    }

    /// The `status` table: jobs per status, sorted by status.
    public static func statusTable(_ entries: [JobStatusEntry]) -> [String] {
        var counts: [String: Int] = [:]
        for e in entries {
            var s = e.status.isEmpty ? "-" : e.status
            // A RADOS job that runs: on which node.
            if s == JobStatusText.running, e.node != "-" { s += " on " + e.node }
            counts[s, default: 0] += 1
        }
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

/// Runs console commands one at a time on one queue, off the event loop.
/// Each client submits its next command only after the previous answer was
/// written, so clients take turns.
// @unchecked Sendable: holds only a serial DispatchQueue.
final class ConsoleWorker: @unchecked Sendable {
    let queue = DispatchQueue(label: "backy-console-commands")
}

// @unchecked Sendable: a channel handler; its state is touched only on its event loop (work on the worker queue hops back with `eventLoop.execute`).
final class ConsoleHandler: ChannelInboundHandler, SlotConnection, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let backend: ConsoleBackend
    let version: String
    let worker: ConsoleWorker
    let server: ConsoleServer
    let id: Int
    var telnet = TelnetDecoder()
    var lines = LineAssembler()
    var closing = false
    var context: ChannelHandlerContext?
    var eventLoop: EventLoop?
    /// Input events not yet handled, and the commands of the line being run.
    var pending: [LineAssembler.Event] = []
    var commands: [[String]] = []
    var running = false
    var admitted = false
    /// The client has sent everything (nc -N): close when the input is done.
    var inputClosed = false
    /// Pending input lines above which the client is not read from.
    static let maxPending = 64

    init(server: ConsoleServer, id: Int) {
        self.server = server
        backend = server.backend
        version = server.version
        worker = server.worker
        self.id = id
    }

    private func send(_ context: ChannelHandlerContext, _ text: String) {
        var buf = context.channel.allocator.buffer(capacity: text.utf8.count)
        buf.writeString(text)
        context.write(wrapOutboundOut(buf), promise: nil)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        eventLoop = context.eventLoop
    }

    func channelActive(context: ChannelHandlerContext) {
        let peer = context.remoteAddress.map { $0.protocol == .unix ? "the Unix socket" : "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
        switch server.slots.admit(id, self, inHandshake: false) {
        case .admitted:
            admitted = true
        case .admittedEvicting(let victim, let idle):
            admitted = true
            victim.closeForPolicy("idle for \(Int(idle)) s while the console is full; its slot goes to a new client")
        case .refused(let why):
            server.refusals.refused(peer: peer, reason: why)
            closing = true
            send(context, "Too many connections (at most \(server.slots.policy.limit)); try again later.\r\n")
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { [channel = context.channel] _ in
                channel.close(promise: nil)
            }
            return
        }
        send(context, ConsoleCommands.banner(version: version) + ConsoleCommands.prompt)
        context.flush()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        if admitted { server.slots.remove(id) }
        context.fireChannelInactive()
    }

    func closeForPolicy(_ reason: String) {
        eventLoop?.execute { [self] in
            guard !closing, let context else { return }
            server.log.info("console: closing a connection: \(reason)")
            closing = true
            send(context, "\r\nClosing the connection: \(reason).\r\n")
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { [channel = context.channel] _ in
                channel.close(promise: nil)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var buf = unwrapInboundIn(data)
        let bytes = buf.readBytes(length: buf.readableBytes) ?? []
        let t = telnet.feed(bytes)
        if !t.reply.isEmpty {
            var out = context.channel.allocator.buffer(capacity: t.reply.count)
            out.writeBytes(t.reply)
            context.write(wrapOutboundOut(out), promise: nil)
        }
        pending += lines.feed(t.data)
        pump(context)
    }

    /// Handles queued input while the client reads its answers: one
    /// command at a time, each on the worker queue.
    private func pump(_ context: ChannelHandlerContext) {
        while !closing && !running && context.channel.isWritable {
            if !commands.isEmpty {
                runNext(context)
                return
            }
            guard !pending.isEmpty else { break }
            let event = pending.removeFirst()
            switch event {
            case .line(let text):
                switch ConsoleCommands.split(text) {
                case .failure(let e):
                    send(context, "Syntax error: \(e.message)\r\n" + ConsoleCommands.prompt)
                case .success(let c):
                    commands = c.filter { !$0.isEmpty }
                    if commands.isEmpty { send(context, ConsoleCommands.prompt) }
                }
            case .tooLong:
                send(context, "Line too long (at most \(LineAssembler.maxLine) bytes).\r\n" + ConsoleCommands.prompt)
            case .endOfInput:
                commands = [["quit"]]
            case .interrupt:
                send(context, "\r\n" + ConsoleCommands.prompt)
            }
        }
        context.flush()
        if !closing && !running && commands.isEmpty && pending.isEmpty && inputClosed {
            finishInput(context)
        }
        updateReading(context)
    }

    private func runNext(_ context: ChannelHandlerContext) {
        let words = commands.removeFirst()
        let last = commands.isEmpty
        running = true
        if admitted { server.slots.update(id, busy: true, activity: true) }
        let backend = self.backend
        let loop = context.eventLoop
        worker.queue.async { [self] in
            let reply = ConsoleCommands.run(words, backend: backend)
            loop.execute { [self] in
                running = false
                if admitted { server.slots.update(id, busy: false, activity: true) }
                guard !closing, let context = self.context else { return }
                var out = reply.lines.map { $0 + "\r\n" }.joined()
                if reply.quit {
                    closing = true
                    commands = []
                    var buf = context.channel.allocator.buffer(capacity: out.utf8.count)
                    buf.writeString(out)
                    context.writeAndFlush(wrapOutboundOut(buf)).whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
                    return
                }
                if last { out += ConsoleCommands.prompt }
                send(context, out)
                pump(context)
            }
        }
    }

    /// Reads from the client only while its answers are being read and
    /// little input waits.
    private func updateReading(_ context: ChannelHandlerContext) {
        let want = !closing && context.channel.isWritable && pending.count < Self.maxPending
        context.channel.setOption(ChannelOptions.autoRead, value: want).whenComplete { _ in }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { pump(context) } else { updateReading(context) }
        context.fireChannelWritabilityChanged()
    }

    private func finishInput(_ context: ChannelHandlerContext) {
        // The client has sent everything (nc -N): answer a last unterminated line, then close.
        if let rest = lines.rest(), !rest.trimmingCharacters(in: .whitespaces).isEmpty {
            pending.append(.line(rest))
            pump(context)
            return
        }
        closing = true
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { [channel = context.channel] _ in
            channel.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            inputClosed = true
            if !closing { pump(context) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        closing = true
        context.close(promise: nil)
    }
}

/// The console's listeners: TCP addresses and a Unix socket, one event loop
/// for all clients, one worker queue for their commands.
// @unchecked Sendable: `channels` and `socketPath` are changed only by start() and stop() (one thread in turn); slots and refusals lock themselves.
public final class ConsoleServer: @unchecked Sendable {
    let backend: ConsoleBackend
    let log: Logger
    let version: String
    let worker = ConsoleWorker()
    let slots: ConnectionSlots<ConsoleHandler>
    let refusals: RefusalLog
    private let nextID = Locked(0)
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channels: [Channel] = []
    private var socketPath: String?

    /// Idle seconds after which a client loses its slot to a new one (when
    /// all slots are taken), and after which it is closed anyway.
    public static let evictAfter: TimeInterval = 10
    public static let idleTimeout: TimeInterval = 3600

    public init(backend: ConsoleBackend, log: Logger, version: String = SchedulerDaemon.version,
                maxConnections: Int = SchedulerConfig.defaultConsoleMaxConnections) {
        self.backend = backend
        self.log = log
        self.version = version
        slots = ConnectionSlots(policy: SlotPolicy(limit: maxConnections, handshakeTimeout: 0,
                                                   idleTimeout: Self.idleTimeout, stallTimeout: Self.idleTimeout,
                                                   minIdleToEvict: Self.evictAfter))
        refusals = RefusalLog(log: log, what: "console")
        slots.startSweeping(period: 5)
    }

    private var bootstrap: ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let id = nextID.with { n -> Int in n += 1; return n }
                    try channel.pipeline.syncOperations.addHandler(ConsoleHandler(server: self, id: id))
                }
            }
    }

    /// Listens on every address; failures are logged (the scheduler keeps running).
    /// Returns the number of listening addresses.
    @discardableResult
    public func start(addresses: [String], port: Int) -> Int {
        let b = bootstrap
        var n = 0
        for addr in addresses {
            log.info("starting telnet server on \(addr):\(port)")
            do {
                channels.append(try b.bind(host: addr, port: port).wait())
                n += 1
            } catch {
                log.error("telnet console: \(ListenError(address: ListenError.address(addr, port), error))")
            }
        }
        return n
    }

    /// Listens on a Unix socket (mode 0660, `group`); failures are logged.
    @discardableResult
    public func start(socket path: String, group: String?) -> Bool {
        let b = bootstrap
        log.info("starting console on \(path)\(group.map { " (group \($0))" } ?? "")")
        do {
            channels.append(try UnixSocket.listen(path: path, group: group) { p in
                try b.bind(unixDomainSocketPath: p).wait()
            })
            socketPath = path
            return true
        } catch {
            log.error("console: \(ListenError(address: path, error))")
            return false
        }
    }

    public func stop() {
        slots.stopSweeping()
        for c in channels { try? c.close().wait() }
        channels.removeAll()
        if let p = socketPath { UnixSocket.remove(p) }
        try? group.syncShutdownGracefully()
    }
}
