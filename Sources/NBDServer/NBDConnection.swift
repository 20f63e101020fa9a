// NBDConnection: the channel handler of one NBD client, from the greeting
// to the disconnect: admission into the connection table, flow control and
// closing. What it says during the handshake is decided by NBDHandshake
// (performed in NBDConnection+Options.swift); requests are served in
// NBDConnection+Requests.swift (in-flight accounting in NBDInflight, reads
// planned by NBDReadPlan). Runs on the channel's event loop; everything
// that may block (scanning the job, loading a map, reading chunks, writing
// the overlay) runs elsewhere and comes back through the loop, with the
// handler bound to it (NIOLoopBound). Decoding and socket reads pause while
// an option is worked on, while too many requests or bytes are in flight,
// while the server's reply budget is used up, or while the client does not
// read its replies. The connection table and the server reach it from any
// thread through its NBDConnectionHandle. NBD_OPT_STARTTLS puts TLS under
// the decoder; with `--tls=require` nothing else is served before it.
import ChunkStore
import Foundation
import Logging
import NIOCore
import Presentation
import ServerSupport

final class NBDConnection: ChannelDuplexHandler {
    typealias InboundIn = NBDInbound
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let core: ServerCore
    let control: NBDDecoderControl
    let kick: NBDDecodeKick
    let id: Int
    var log: Logger { core.log }
    var context: ChannelHandlerContext!
    var peer = "?"
    /// How other threads reach this connection.
    private(set) var handle: NBDConnectionHandle!

    // Handshake state.
    var handshake: NBDHandshake
    var waitingForOption = false
    /// Whether this connection holds a slot in the connection table.
    var admitted = false
    var structured: Bool { handshake.structured }

    // Transmission state.
    var export: OpenExport?
    var overlay: Overlay?
    var metaActive = false
    var inflight = NBDInflight()
    /// Whether the client reads its replies (for the reply budget's order).
    var progress = ReadProgress()
    var readPending = false
    var disconnecting = false
    var shuttingDown = false
    var closed = false
    var lastChunk = -2

    // Statistics for the log.
    private let started = Date()
    var requests = 0
    var bytesRead: UInt64 = 0
    var bytesWritten: UInt64 = 0
    var failures = 0

    let eventLoop: EventLoop

    init(core: ServerCore, control: NBDDecoderControl, kick: NBDDecodeKick, eventLoop: EventLoop) {
        self.core = core
        self.control = control
        self.kick = kick
        self.eventLoop = eventLoop
        handshake = NBDHandshake(tls: core.tls?.mode)
        id = core.nextID.with { n -> Int in
            n += 1
            return n
        }
    }

    var writable: Bool { core.config.writable }

    /// This handler, for closures that come back to the loop from elsewhere.
    var bound: NIOLoopBound<NBDConnection> { NIOLoopBound(self, eventLoop: eventLoop) }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        handle = NBDConnectionHandle(bound)
    }

    func channelActive(context: ChannelHandlerContext) {
        if let a = context.remoteAddress {
            peer = a.protocol == .unix ? "the Unix socket" : "\(a.ipAddress ?? "?"):\(a.port ?? 0)"
        }
        if core.stopping.get {
            closed = true
            control.phase = .stopped
            context.close(promise: nil)
            return
        }
        switch core.slots.admit(id, handle) {
        case .admitted:
            admitted = true
        case .admittedEvicting(let victim, let idle):
            admitted = true
            victim.closeForPolicy("idle for \(Int(idle)) s while the server is full; its slot goes to a new client")
        case .refused(let why):
            core.refusals.refused(peer: peer, reason: why)
            // An error reply to the client's options, then close; at most
            // 16 refused clients at a time are answered, the rest are closed.
            let answer = core.refusing.with { n -> Bool in
                if n >= 16 { return false }
                n += 1
                return true
            }
            if !answer {
                closed = true
                control.phase = .stopped
                context.close(promise: nil)
                return
            }
            handshake.refusal = "the NBD server is busy: \(why); try again later"
            context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(2)) { self.close() }
        }
        core.connections.with { $0[id] = handle }
        if handshake.refusal == nil { log.info("NBD connection \(id) from \(peer)") }
        var b = context.channel.allocator.buffer(capacity: 18)
        NBDEncode.greeting(&b)
        context.writeAndFlush(wrapOutboundOut(b), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        core.connections.with { _ = $0.removeValue(forKey: id) }
        if admitted { core.slots.remove(id) }
        if handshake.refusal != nil { core.refusing.with { $0 -= 1 } }
        closed = true
        control.phase = .stopped
        // Everything this connection held goes back at once.
        core.budget.leave(id, holding: inflight.budgetReturned ? 0 : inflight.bytes)
        inflight.budgetReturned = true
        if let ex = export {
            ex.close()
            export = nil
        }
        overlay?.close()
        overlay = nil
        if admitted {
            let secs = Date().timeIntervalSince(started)
            log.info("NBD connection \(id) from \(peer) closed after \(String(format: "%.1f", secs)) s: \(requests) requests, \(ByteFormat.flexible(Int64(bytesRead))) read, \(ByteFormat.flexible(Int64(bytesWritten))) written to the overlay, \(failures) failed; cache: \(core.cache.loads) loads, \(core.cache.hits) hits")
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !closed {
            log.warning("NBD connection \(id) from \(peer): \(handshake.tlsActive && control.phase != .transmission ? "TLS: " : "")\(error); closing")
        }
        close()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        updateFlow()
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if control.paused || closed {
            readPending = true
        } else {
            context.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if closed { return }
        switch unwrapInboundIn(data) {
        case .clientFlags(let f):
            let actions = handshake.clientFlags(f)
            if actions.isEmpty { control.phase = .options } else { perform(actions) }
        case .option(let code, let data):
            if admitted { core.slots.update(id, activity: true) }
            perform(handshake.option(code, data))
        case .optionTooBig(let code, let length):
            perform(handshake.optionTooBig(code, length: Int(length)))
        case .request(let req, let payload):
            handleRequest(req, payload: payload)
        case .requestPayloadSkipped(let req):
            refuseSkippedPayload(req)
        case .violation(let why):
            log.warning("NBD connection \(id) from \(peer): \(why); closing")
            close()
        }
    }

    // MARK: flow control and closing

    /// Pauses or resumes decoding and socket reads.
    func updateFlow() {
        guard !closed, let context else { return }
        let pause = waitingForOption || disconnecting || shuttingDown
            || inflight.full(maxRequests: core.config.maxInflightRequests, maxBytes: core.config.maxInflightBytes)
            || !context.channel.isWritable
        if control.paused && !pause {
            control.paused = false
            // Decode what is already buffered, then read more.
            kick.kick()
            if readPending && !closed && !control.paused {
                readPending = false
                context.read()
            }
        } else {
            control.paused = pause
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        control.phase = .stopped
        context?.close(promise: nil)
    }

    /// The connection table closes this connection.
    func closeForPolicy(_ reason: String) {
        guard !closed else { return }
        log.warning("NBD connection \(id) from \(peer): \(reason); closing")
        close()
    }

    /// The server stops: in-flight requests finish, then the connection
    /// closes (at once if it is still in the handshake).
    func beginShutdown() {
        shuttingDown = true
        if control.phase != .transmission {
            close()
        } else {
            updateFlow()
            finishIfIdle()
        }
    }

    func finishIfIdle() {
        if (disconnecting || shuttingDown) && inflight.requests == 0 && !closed {
            context.flush()
            close()
        }
    }
}

/// How the connection table and the server reach a connection from any
/// thread: each call runs on the connection's event loop.
final class NBDConnectionHandle: SlotConnection, Sendable {
    private let connection: NIOLoopBound<NBDConnection>

    init(_ connection: NIOLoopBound<NBDConnection>) { self.connection = connection }

    private func onLoop(_ body: @escaping @Sendable (NBDConnection) -> Void) {
        let c = connection
        c.eventLoop.execute { body(c.value) }
    }

    func closeForPolicy(_ reason: String) { onLoop { $0.closeForPolicy(reason) } }
    func beginShutdown() { onLoop { $0.beginShutdown() } }
    func forceClose() { onLoop { $0.close() } }
}
