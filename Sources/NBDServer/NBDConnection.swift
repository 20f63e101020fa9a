// NBDConnection: one client, from the greeting to the disconnect. Runs on
// the channel's event loop; everything that may block (scanning the job,
// loading a map, reading chunks, writing the overlay) runs elsewhere and
// comes back through `eventLoop.execute`. Requests are served concurrently
// and answered as they complete. The connection stops reading from the
// socket while it works on an option, while it has too many requests or
// bytes in flight, while the server's reply budget is used up, or while
// the client does not read its replies. It reports its state to the
// server's connection table, which may close it (timeouts, a stalled
// client, its slot given to a new client); a client over the connection
// limit gets an error reply to each option and is closed. NBD_OPT_STARTTLS
// puts TLS under the decoder; with `--tls=require` nothing else is served
// before it.
import ChunkStore
import Foundation
import Logging
import NIOCore
import Presentation
import ServerSupport

final class NBDConnection: ChannelDuplexHandler, SlotConnection, @unchecked Sendable {
    typealias InboundIn = NBDInbound
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let core: ServerCore
    let control: NBDDecoderControl
    let kick: NBDDecodeKick
    let id: Int
    var log: Logger { core.log }
    private var context: ChannelHandlerContext!
    private var peer = "?"

    // Handshake state.
    private var handshake: NBDHandshake
    private var waitingForOption = false
    /// Whether this connection holds a slot in the connection table.
    private var admitted = false
    private var structured: Bool { handshake.structured }

    // Transmission state.
    private var export: OpenExport?
    private var overlay: Overlay?
    private var metaActive = false
    private var inflight = 0
    /// Bytes this connection holds of the server's reply budget.
    private var inflightBytes = 0
    private var budgetReturned = false
    /// A request waiting for reply budget, and whether decoding waits for it.
    private var parked: NBDRequest?
    private var waitingForBudget = false
    /// Replies handed to the channel and not yet written.
    private var queuedReplies = 0
    private var reported = (busy: false, queued: false)
    private var lastWriteReport: TimeInterval = 0
    private var readPending = false
    private var disconnecting = false
    private var shuttingDown = false
    private var closed = false
    private var lastChunk = -2

    // Statistics for the log.
    private let started = Date()
    private var requests = 0
    private var bytesRead: UInt64 = 0
    private var bytesWritten: UInt64 = 0
    private var failures = 0

    /// The channel's event loop (safe to read from any thread).
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

    private var writable: Bool { core.config.writable }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
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
        switch core.slots.admit(id, self) {
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
            context.eventLoop.scheduleTask(in: .seconds(2)) { [self] in close() }
        }
        core.connections.with { $0[id] = self }
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
        core.budget.leave(id)
        if !budgetReturned {
            budgetReturned = true
            core.budget.adjust(-inflightBytes)
        }
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

    /// The connection table closes this connection (any thread).
    func closeForPolicy(_ reason: String) {
        eventLoop.execute { [self] in
            guard !closed else { return }
            log.warning("NBD connection \(id) from \(peer): \(reason); closing")
            close()
        }
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
            requests += 1
            begin()
            if req.flags & ~NBDTransmission.allowedFlags(type: req.type, structured: structured) != 0 {
                replyError(req, NBD.EINVAL, "command flags 0x\(String(req.flags, radix: 16)) not valid for command \(req.type)")
            } else if !writable {
                replyError(req, NBD.EPERM, "the export is read-only")
            } else {
                replyError(req, NBD.EINVAL, "write of \(req.length) bytes exceeds the maximum block size")
            }
        case .violation(let why):
            log.warning("NBD connection \(id) from \(peer): \(why); closing")
            close()
        }
    }

    // MARK: flow control

    /// Pauses or resumes decoding and socket reads.
    private func updateFlow() {
        guard !closed, let context else { return }
        let pause = waitingForOption || waitingForBudget || disconnecting || shuttingDown
            || inflight >= core.config.maxInflightRequests
            || inflightBytes >= core.config.maxInflightBytes
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

    private func close() {
        guard !closed else { return }
        closed = true
        control.phase = .stopped
        context?.close(promise: nil)
    }

    /// Called on any thread when the server stops.
    func beginShutdown() {
        eventLoop.execute { [self] in
            shuttingDown = true
            if control.phase != .transmission {
                close()
            } else {
                updateFlow()
                finishIfIdle()
            }
        }
    }

    func forceClose() {
        eventLoop.execute { [self] in close() }
    }

    private func finishIfIdle() {
        if (disconnecting || shuttingDown) && inflight == 0 && !closed {
            context.flush()
            close()
        }
    }

    // MARK: handshake

    /// Does what the handshake decided, in order.
    private func perform(_ actions: [NBDHandshake.Action]) {
        for a in actions {
            if closed { return }
            switch a {
            case .warn(let w): log.warning("NBD connection \(id) from \(peer): \(w)")
            case .reply(let option, let type, let message): replyOption(option, type, message)
            case .close: close()
            case .startTLS: startTLS()
            case .list: list()
            case .info(let name): info(name)
            case .go(let name): go(name)
            case .exportName(let name): exportName(name)
            case .metaContext(let option, let name, let contexts, let set): metaContext(option, name, contexts, set)
            }
        }
    }

    private func replyOption(_ option: UInt32, _ type: UInt32, _ message: String = "") {
        var b = context.channel.allocator.buffer(capacity: 20 + message.utf8.count)
        NBDEncode.optionReply(&b, option: option, type: type, message: message)
        context.writeAndFlush(wrapOutboundOut(b), promise: nil)
    }

    /// Runs blocking work off the event loop, then `then` on it; decoding
    /// pauses meanwhile.
    private func offLoop<T>(_ work: @escaping () throws -> T, then: @escaping (Result<T, Error>) -> Void) {
        waitingForOption = true
        updateFlow()
        let loop = context.eventLoop
        core.control.async {
            let r = Result { try work() }
            loop.execute { [self] in
                waitingForOption = false
                if closed { return }
                then(r)
                updateFlow()
            }
        }
    }

    private static func message(_ e: Error) -> String {
        if let b = e as? BackyError { return b.message }
        return "\(e)"
    }

    private func startTLS() {
        guard let tls = core.tls else { return close() }
        do {
            try context.pipeline.syncOperations.addHandler(tls.makeHandler(), position: .first)
        } catch {
            log.warning("NBD connection \(id) from \(peer): cannot start TLS: \(error); closing")
            close()
            return
        }
        handshake.tlsStarted()
        log.info("NBD connection \(id) from \(peer): TLS started")
    }

    private func exportName(_ name: String) {
        let (provider, config, space) = (core.provider, core.config, core.overlaySpace)
        offLoop({ try Self.open(provider, name, config, space) }) { [self] r in
            switch r {
            case .success(let (ex, ov)):
                enterTransmission(ex, ov, name: name)
                var b = context.channel.allocator.buffer(capacity: 134)
                NBDEncode.exportNameReply(&b, size: ex.info.size, flags: transmissionFlags, noZeroes: handshake.noZeroes)
                context.writeAndFlush(wrapOutboundOut(b), promise: nil)
            case .failure(let e):
                // EXPORT_NAME cannot answer with an error: hard disconnect.
                log.warning("NBD connection \(id): export '\(name)' is not available: \(Self.message(e)); closing")
                close()
            }
        }
    }

    private func list() {
        let provider = core.provider
        offLoop({ try provider.list() }) { [self] r in
            switch r {
            case .success(let exports):
                var b = context.channel.allocator.buffer(capacity: 64 * (exports.count + 1))
                for e in exports { NBDEncode.serverReply(&b, name: e.name, description: e.description) }
                NBDEncode.optionReply(&b, option: NBD.optList, type: NBD.repAck)
                context.writeAndFlush(wrapOutboundOut(b), promise: nil)
            case .failure(let e):
                replyOption(NBD.optList, NBD.repErrInvalid, "cannot list revisions: \(Self.message(e))")
            }
        }
    }

    private func go(_ name: String) {
        let (provider, config, space) = (core.provider, core.config, core.overlaySpace)
        offLoop({ try Self.open(provider, name, config, space) }) { [self] r in
            switch r {
            case .success(let (ex, ov)):
                var b = context.channel.allocator.buffer(capacity: 256)
                writeInfo(&b, NBD.optGo, ex.info)
                NBDEncode.optionReply(&b, option: NBD.optGo, type: NBD.repAck)
                enterTransmission(ex, ov, name: name)
                context.writeAndFlush(wrapOutboundOut(b), promise: nil)
            case .failure(let e):
                log.warning("NBD connection \(id): export '\(name)' is not available: \(Self.message(e))")
                replyOption(NBD.optGo, NBD.repErrUnknown, Self.message(e))
            }
        }
    }

    private func info(_ name: String) {
        let provider = core.provider
        offLoop({ try provider.describe(name) }) { [self] r in
            switch r {
            case .success(let info):
                var b = context.channel.allocator.buffer(capacity: 256)
                writeInfo(&b, NBD.optInfo, info)
                NBDEncode.optionReply(&b, option: NBD.optInfo, type: NBD.repAck)
                context.writeAndFlush(wrapOutboundOut(b), promise: nil)
            case .failure(let e):
                replyOption(NBD.optInfo, NBD.repErrUnknown, Self.message(e))
            }
        }
    }

    private func metaContext(_ code: UInt32, _ name: String, _ contexts: [String], _ set: Bool) {
        let provider = core.provider
        offLoop({ try provider.describe(name) }) { [self] r in
            switch r {
            case .success:
                var b = context.channel.allocator.buffer(capacity: 64)
                for c in contexts {
                    NBDEncode.metaContext(&b, option: code, id: set ? NBDMetaContext.baseAllocationID : 0, name: c)
                }
                NBDEncode.optionReply(&b, option: code, type: NBD.repAck)
                if set && !contexts.isEmpty { handshake.metaContextSelected(name) }
                context.writeAndFlush(wrapOutboundOut(b), promise: nil)
            case .failure(let e):
                replyOption(code, NBD.repErrUnknown, Self.message(e))
            }
        }
    }

    private static func open(_ provider: ExportProvider, _ name: String, _ config: NBDServerConfig,
                             _ space: OverlaySpace) throws -> (OpenExport, Overlay?) {
        let ex = try provider.open(name)
        guard config.writable else { return (ex, nil) }
        do {
            let ov = try Overlay(size: ex.info.size, chunkSize: ex.image.chunkSize, directory: config.overlayDirectory,
                                 space: space)
            return (ex, ov)
        } catch {
            ex.close()
            throw error
        }
    }

    private var transmissionFlags: UInt16 {
        NBDTransmission.flags(writable: writable, structured: structured)
    }

    private func writeInfo(_ b: inout ByteBuffer, _ code: UInt32, _ info: ExportInfo) {
        NBDEncode.infoExport(&b, option: code, size: info.size, flags: transmissionFlags)
        NBDEncode.infoString(&b, option: code, info: NBD.infoName, info.name)
        NBDEncode.infoString(&b, option: code, info: NBD.infoDescription, info.description)
        let minBlock: UInt32 = info.size % UInt64(NBDLimits.minBlockSize) == 0 ? NBDLimits.minBlockSize : 1
        NBDEncode.infoBlockSize(&b, option: code, min: minBlock, preferred: NBDLimits.preferredBlockSize,
                                max: UInt32(NBDLimits.maxRequest))
    }

    private func enterTransmission(_ ex: OpenExport, _ ov: Overlay?, name: String) {
        export = ex
        overlay = ov
        metaActive = handshake.metaActive(forExport: name)
        control.acceptWrites = writable
        control.admitPayload = { [unowned self] n in admitPayload(n) }
        control.phase = .transmission
        if admitted { core.slots.update(id, inHandshake: false, activity: true) }
        log.info("NBD connection \(id): serving revision \(ex.info.name) (\(ByteFormat.flexible(Int64(ex.info.size)))), \(writable ? "writable overlay" : "read-only")")
    }

    // MARK: transmission

    /// Counts a request in flight (its bytes are taken separately).
    private func begin() {
        inflight += 1
        report()
        updateFlow()
    }

    /// Changes the bytes this connection holds of the reply budget.
    private func hold(_ delta: Int) {
        inflightBytes += delta
        if !budgetReturned { core.budget.adjust(delta) }
    }

    /// Takes `n` bytes of the reply budget, or arranges to be woken when
    /// budget may be there and returns false.
    private func tryHold(_ n: Int) -> Bool {
        if closed { return false }
        let ok = core.budget.take(id, n) { [weak self] in
            guard let self else { return }
            self.eventLoop.execute { self.budgetAvailable() }
        }
        if ok { inflightBytes += n }
        return ok
    }

    private func budgetAvailable() {
        guard !closed, waitingForBudget else { return }
        waitingForBudget = false
        if let req = parked, let ex = export {
            parked = nil
            read(req, ex)
        }
        updateFlow()
    }

    /// The decoder asks for memory for a WRITE payload.
    private func admitPayload(_ n: Int) -> Bool {
        if tryHold(n) { return true }
        waitingForBudget = true
        return false
    }

    /// Tells the connection table whether this connection is busy and
    /// whether replies wait to be written (only changes, and write progress
    /// at most twice a second).
    private func report(wrote: Bool = false) {
        guard admitted else { return }
        let now = (busy: inflight > 0, queued: queuedReplies > 0)
        var progress = false
        if wrote {
            let t = ProcessInfo.processInfo.systemUptime
            if t - lastWriteReport > 0.5 {
                lastWriteReport = t
                progress = true
            }
        }
        if now != reported || progress {
            let activity = now.busy != reported.busy
            reported = now
            core.slots.update(id, busy: now.busy, queued: now.queued, wrote: progress, activity: activity)
        }
    }

    /// Sends a reply's buffers; the request stops counting once written.
    private func send(_ buffers: [ByteBuffer], bytes: Int) {
        if closed { return }
        queuedReplies += 1
        if queuedReplies == 1 { report() }
        for (k, b) in buffers.enumerated() {
            if k == buffers.count - 1 {
                let p = context.eventLoop.makePromise(of: Void.self)
                p.futureResult.whenComplete { [self] _ in done(bytes) }
                context.write(wrapOutboundOut(b), promise: p)
            } else {
                context.write(wrapOutboundOut(b), promise: nil)
            }
        }
        context.flush()
    }

    private func done(_ bytes: Int) {
        inflight -= 1
        queuedReplies -= 1
        hold(-bytes)
        report(wrote: true)
        updateFlow()
        finishIfIdle()
    }

    private func replyOK(_ req: NBDRequest, bytes: Int = 0) {
        var b = context.channel.allocator.buffer(capacity: 16)
        NBDEncode.simpleReply(&b, error: 0, handle: req.handle)
        send([b], bytes: bytes)
    }

    private func replyError(_ req: NBDRequest, _ error: UInt32, _ message: String, bytes: Int = 0) {
        failures += 1
        var b = context.channel.allocator.buffer(capacity: 32 + message.utf8.count)
        if structured {
            NBDEncode.structuredError(&b, handle: req.handle, error: error, message: message)
        } else {
            NBDEncode.simpleReply(&b, error: error, handle: req.handle)
        }
        send([b], bytes: bytes)
    }

    private func handleRequest(_ req: NBDRequest, payload: ByteBuffer?) {
        guard let ex = export else { return }
        requests += 1
        if req.type == NBD.cmdDisc {
            disconnecting = true
            updateFlow()
            finishIfIdle()
            return
        }
        let size = ex.info.size
        begin()
        // A WRITE payload's bytes were taken when the decoder admitted it.
        let heldBytes = payload?.readableBytes ?? 0
        if req.flags & ~NBDTransmission.allowedFlags(type: req.type, structured: structured) != 0 {
            replyError(req, NBD.EINVAL, "command flags 0x\(String(req.flags, radix: 16)) not valid for command \(req.type)", bytes: heldBytes)
            return
        }
        switch req.type {
        case NBD.cmdRead:
            guard req.fits(size: size) else {
                return replyError(req, NBD.EINVAL, "read beyond the end of the export (size \(size))")
            }
            guard req.length <= UInt32(NBDLimits.maxRequest) else {
                return replyError(req, NBD.EINVAL, "read of \(req.length) bytes exceeds the maximum block size")
            }
            read(req, ex)

        case NBD.cmdWrite:
            guard let ov = overlay, let data = payload else {
                return replyError(req, NBD.EPERM, "the export is read-only", bytes: heldBytes)
            }
            guard req.fits(size: size) else {
                return replyError(req, NBD.ENOSPC, "write beyond the end of the export (size \(size))", bytes: heldBytes)
            }
            modify(req, bytes: heldBytes) { base in
                try data.withUnsafeReadableBytes { try ov.write(offset: req.offset, data: $0, base: base) }
            }

        case NBD.cmdFlush:
            // Nothing is cached for writing: the overlay is throwaway and
            // the revision is never written.
            replyOK(req)

        case NBD.cmdTrim, NBD.cmdWriteZeroes:
            guard let ov = overlay else {
                return replyError(req, NBD.EPERM, "the export is read-only")
            }
            guard req.fits(size: size) else {
                return replyError(req, req.type == NBD.cmdTrim ? NBD.EINVAL : NBD.ENOSPC,
                                  "request beyond the end of the export (size \(size))")
            }
            if req.type == NBD.cmdWriteZeroes && req.length > UInt32(NBDLimits.maxRequest)
                && req.flags & NBD.cmdFlagFastZero == 0 {
                return replyError(req, NBD.EINVAL, "write zeroes of \(req.length) bytes exceeds the maximum block size")
            }
            modify(req, bytes: 0) { base in
                try ov.zero(offset: req.offset, length: UInt64(req.length), base: base)
            }

        case NBD.cmdCache:
            guard req.fits(size: size) else {
                return replyError(req, NBD.EINVAL, "cache request beyond the end of the export (size \(size))")
            }
            guard req.length <= UInt32(NBDLimits.maxRequest) else {
                return replyError(req, NBD.EINVAL, "cache request of \(req.length) bytes exceeds the maximum block size")
            }
            if req.length > 0 {
                let img = ex.image
                let cs = UInt64(img.chunkSize)
                let first = Int(req.offset / cs)
                let last = Int((req.offset + UInt64(req.length) - 1) / cs)
                var started = 0
                for c in first...last where !img.isZero(c) && started < max(1, core.cache.capacity / 2) {
                    if core.cache.prefetch(img, c) { started += 1 }
                }
            }
            replyOK(req)

        case NBD.cmdBlockStatus:
            guard metaActive else {
                return replyError(req, NBD.EINVAL, "no metadata context was negotiated for this export")
            }
            guard req.length > 0, req.fits(size: size) else {
                return replyError(req, NBD.EINVAL, "block status range outside the export (size \(size))")
            }
            let ext = BlockStatus.extents(image: ex.image, overlay: overlay, offset: req.offset, length: req.length,
                                          reqOne: req.flags & NBD.cmdFlagReqOne != 0)
            var b = context.channel.allocator.buffer(capacity: 24 + 8 * ext.count)
            NBDEncode.blockStatus(&b, handle: req.handle, contextID: NBDMetaContext.baseAllocationID, extents: ext)
            send([b], bytes: 0)

        default:
            replyError(req, NBD.EINVAL, "unknown command \(req.type)", bytes: heldBytes)
        }
    }

    /// Runs an overlay change on a worker, then replies.
    private func modify(_ req: NBDRequest, bytes: Int, _ body: @escaping (Overlay.BaseReader) throws -> Void) {
        guard let ex = export else { return }
        let image = ex.image
        let cache = core.cache
        let loop = context.eventLoop
        core.pool.submit(.demand) { [self] ws in
            let base: Overlay.BaseReader = { offset, out in
                try Self.readBase(image, cache, ws, offset, out)
            }
            let r = Result { try body(base) }
            loop.execute { [self] in
                if closed { return }
                switch r {
                case .success:
                    if req.type == NBD.cmdWrite { bytesWritten += UInt64(req.length) }
                    replyOK(req, bytes: bytes)
                case .failure(let e as OverlayFull):
                    log.warning("NBD connection \(id): revision \(ex.info.name): \(req.type == NBD.cmdWrite ? "write" : "zero") at offset \(req.offset) refused: \(e)")
                    replyError(req, NBD.ENOSPC, e.description, bytes: bytes)
                case .failure(let e):
                    log.error("NBD connection \(id): revision \(ex.info.name): \(req.type == NBD.cmdWrite ? "write" : "zero") at offset \(req.offset) failed: \(e)")
                    replyError(req, NBD.EIO, "\(e)", bytes: bytes)
                }
            }
        }
    }

    /// Reads revision bytes on a worker thread (for read-modify-write).
    static func readBase(_ image: ImageReader, _ cache: ChunkCache, _ ws: ChunkWorkspace,
                         _ offset: UInt64, _ out: UnsafeMutableRawBufferPointer) throws {
        let cs = UInt64(image.chunkSize)
        var pos = offset
        var done = 0
        while done < out.count {
            let c = Int(pos / cs)
            let inChunk = Int(pos - UInt64(c) * cs)
            let n = min(out.count - done, image.length(of: c) - inChunk)
            if image.isZero(c) {
                (out.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: 0, count: n)
            } else {
                let b = try cache.getNow(image, c, workspace: ws)
                b.withUnsafeReadableBytes { src in
                    (out.baseAddress! + done).copyMemory(from: src.baseAddress! + inChunk, byteCount: n)
                }
            }
            done += n
            pos += UInt64(n)
        }
    }

    // MARK: reads

    /// The state of one read until all its pieces are there.
    final class ReadOp {
        let req: NBDRequest
        let segments: [NBDReadPlan.Segment]
        var data: [ByteBuffer?]
        var pending = 0
        var error: Error?
        /// Budget bytes taken for this read (its estimated cost).
        var bytes: Int
        init(_ req: NBDRequest, _ segments: [NBDReadPlan.Segment], cost: Int) {
            self.req = req
            self.segments = segments
            data = Array(repeating: nil, count: segments.count)
            bytes = cost
        }
    }

    private func read(_ req: NBDRequest, _ ex: OpenExport) {
        if req.length == 0 {
            send([NBDReadPlan.emptyReply(to: req, structured: structured, allocator: context.channel.allocator)], bytes: 0)
            return
        }
        let image = ex.image
        let segs = NBDReadPlan.segments(image: image, overlay: overlay, offset: req.offset, length: Int(req.length))
        let estimate = NBDReadPlan.cost(segs)
        guard tryHold(estimate) else {
            // No budget now: wait (and stop decoding) until there is.
            parked = req
            waitingForBudget = true
            updateFlow()
            return
        }
        let op = ReadOp(req, segs, cost: estimate)
        let loop = context.eventLoop
        let cache = core.cache
        for (k, seg) in op.segments.enumerated() {
            switch seg {
            case .zero:
                break
            case .chunk(let c, _, _, _):
                let got = cache.get(image, c) { [self] r in
                    loop.execute { [self] in arrived(op, k, r) }
                }
                if let b = got { op.data[k] = b } else { op.pending += 1 }
            case .overlay(let off, let len):
                op.pending += 1
                let ov = overlay!
                let alloc = context.channel.allocator
                core.pool.submit(.demand) { [self] _ in
                    var b = alloc.buffer(capacity: len)
                    let r = Result<ByteBuffer, Error> {
                        try b.writeWithUnsafeMutableBytes(minimumWritableBytes: len) { out in
                            try ov.read(offset: off, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<len]))
                            return len
                        }
                        return b
                    }
                    loop.execute { [self] in arrived(op, k, r) }
                }
            }
        }
        readAhead(image, req)
        if op.pending == 0 { finish(op) }
    }

    private func arrived(_ op: ReadOp, _ k: Int, _ r: Result<ByteBuffer, Error>) {
        switch r {
        case .success(let b): op.data[k] = b
        case .failure(let e): if op.error == nil { op.error = e }
        }
        op.pending -= 1
        if op.pending == 0 { finish(op) }
    }

    /// Starts loading the chunks after a sequential reader's position.
    private func readAhead(_ image: ImageReader, _ req: NBDRequest) {
        let n = core.config.readAhead
        let cs = UInt64(image.chunkSize)
        let last = Int((req.offset + UInt64(req.length) - 1) / cs)
        defer { lastChunk = last }
        guard n > 0, last == lastChunk || last == lastChunk + 1 else { return }
        guard core.pool.queuedPrefetch < core.pool.count * 4 else { return }
        var c = last + 1
        while c <= last + n && c < image.chunkCount {
            if !image.isZero(c) { core.cache.prefetch(image, c) }
            c += 1
        }
    }

    /// Sends a completed read.
    private func finish(_ op: ReadOp) {
        if closed { return }
        let req = op.req
        if let e = op.error {
            log.error("NBD connection \(id): revision \(export?.info.name ?? "?"): cannot read \(req.length) bytes at offset \(req.offset): \(e)")
            hold(-op.bytes)
            replyError(req, NBD.EIO, "damaged or missing backup data: \(e)")
            return
        }
        bytesRead += UInt64(req.length)
        let (buffers, cost) = NBDReadPlan.reply(to: req, structured: structured, segments: op.segments, data: op.data,
                                                allocator: context.channel.allocator)
        hold(cost - op.bytes)
        send(buffers, bytes: cost)
    }
}
