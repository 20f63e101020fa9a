// NBDConnection+Requests: the transmission phase of an NBD connection:
// requests checked and dispatched (read, write, trim, write zeroes, flush,
// cache, block status), the in-flight accounting around them (NBDInflight,
// the server's reply budget), overlay changes on a worker thread, and reads
// run from their plan (NBDReadPlan): chunks from the cache, overlay bytes
// from a worker, the reply sent when every piece is there, read-ahead for
// sequential readers.
import ChunkStore
import Foundation
import NIOCore

extension NBDConnection {
    /// A WRITE whose payload the decoder skipped (read-only export, or too
    /// large): its error reply.
    func refuseSkippedPayload(_ req: NBDRequest) {
        requests += 1
        begin()
        if req.flags & ~NBDTransmission.allowedFlags(type: req.type, structured: structured) != 0 {
            replyError(req, NBD.EINVAL, "command flags 0x\(String(req.flags, radix: 16)) not valid for command \(req.type)")
        } else if !writable {
            replyError(req, NBD.EPERM, "the export is read-only")
        } else {
            replyError(req, NBD.EINVAL, "write of \(req.length) bytes exceeds the maximum block size")
        }
    }

    /// Counts a request in flight (its bytes are taken separately).
    func begin() {
        inflight.requests += 1
        report()
        updateFlow()
    }

    /// Changes the bytes this connection holds of the reply budget.
    func hold(_ delta: Int) {
        inflight.bytes += delta
        if !inflight.budgetReturned { core.budget.adjust(id, delta) }
    }

    /// Takes `n` bytes of the reply budget, or arranges to be woken when
    /// budget may be there and returns false.
    func tryHold(_ n: Int) -> Bool {
        if closed { return false }
        let back = bound
        let ok = core.budget.take(id, n) {
            back.eventLoop.execute { back.value.budgetAvailable() }
        }
        if ok { inflight.bytes += n }
        return ok
    }

    func budgetAvailable() {
        guard !closed, inflight.waitingForBudget else { return }
        inflight.waitingForBudget = false
        if let req = inflight.parked, let ex = export {
            inflight.parked = nil
            read(req, ex)
        }
        updateFlow()
    }

    /// The decoder asks for memory for a WRITE payload.
    func admitPayload(_ n: Int) -> Bool {
        if tryHold(n) { return true }
        inflight.waitingForBudget = true
        return false
    }

    /// Tells the connection table whether this connection is busy and
    /// whether replies wait to be written (only changes, and write progress
    /// at most twice a second).
    func report(wrote: Bool = false) {
        guard admitted, let r = inflight.report(wrote: wrote, now: ProcessInfo.processInfo.systemUptime) else { return }
        core.slots.update(id, busy: r.busy, queued: r.queued, wrote: r.wrote, activity: r.activity)
    }

    /// Sends a reply's buffers; the request stops counting once written.
    func send(_ buffers: [ByteBuffer], bytes: Int) {
        if closed { return }
        inflight.queuedReplies += 1
        if inflight.queuedReplies == 1 { report() }
        for (k, b) in buffers.enumerated() {
            if k == buffers.count - 1 {
                let p = context.eventLoop.makePromise(of: Void.self)
                p.futureResult.assumeIsolated().whenComplete { _ in self.done(bytes) }
                context.write(wrapOutboundOut(b), promise: p)
            } else {
                context.write(wrapOutboundOut(b), promise: nil)
            }
        }
        context.flush()
    }

    func done(_ bytes: Int) {
        inflight.requests -= 1
        inflight.queuedReplies -= 1
        hold(-bytes)
        checkReading()
        report(wrote: true)
        updateFlow()
        finishIfIdle()
    }

    func replyOK(_ req: NBDRequest, bytes: Int = 0) {
        var b = context.channel.allocator.buffer(capacity: 16)
        NBDEncode.simpleReply(&b, error: 0, handle: req.handle)
        send([b], bytes: bytes)
    }

    func replyError(_ req: NBDRequest, _ error: UInt32, _ message: String, bytes: Int = 0) {
        failures += 1
        var b = context.channel.allocator.buffer(capacity: 32 + message.utf8.count)
        if structured {
            NBDEncode.structuredError(&b, handle: req.handle, error: error, message: message)
        } else {
            NBDEncode.simpleReply(&b, error: error, handle: req.handle)
        }
        send([b], bytes: bytes)
    }

    func handleRequest(_ req: NBDRequest, payload: ByteBuffer?) {
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
    func modify(_ req: NBDRequest, bytes: Int, _ body: @escaping (Overlay.BaseReader) throws -> Void) {
        guard let ex = export else { return }
        let image = ex.image
        let cache = core.cache
        let back = bound
        core.pool.submit(.demand) { ws in
            let base: Overlay.BaseReader = { offset, out in
                try Self.readBase(image, cache, ws, offset, out)
            }
            let r = Result { try body(base) }
            back.eventLoop.execute { back.value.modified(req, ex, bytes: bytes, r) }
        }
    }

    /// Replies to an overlay change.
    func modified(_ req: NBDRequest, _ ex: OpenExport, bytes: Int, _ r: Result<Void, Error>) {
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

    func read(_ req: NBDRequest, _ ex: OpenExport) {
        if req.length == 0 {
            send([NBDReadPlan.emptyReply(to: req, structured: structured, allocator: context.channel.allocator)], bytes: 0)
            return
        }
        let image = ex.image
        let segs = NBDReadPlan.segments(image: image, overlay: overlay, offset: req.offset, length: Int(req.length))
        let estimate = NBDReadPlan.cost(segs)
        guard tryHold(estimate) else {
            // No budget now: wait (and stop decoding) until there is.
            inflight.parked = req
            inflight.waitingForBudget = true
            updateFlow()
            return
        }
        let op = ReadOp(req, segs, cost: estimate)
        let back = NIOLoopBound((connection: self, op: op), eventLoop: eventLoop)
        let cache = core.cache
        for (k, seg) in op.segments.enumerated() {
            switch seg {
            case .zero:
                break
            case .chunk(let c, _, _, _):
                let got = cache.get(image, c) { r in
                    back.eventLoop.execute { back.value.connection.arrived(back.value.op, k, r) }
                }
                if let b = got { op.data[k] = b } else { op.pending += 1 }
            case .overlay(let off, let len):
                op.pending += 1
                let ov = overlay!
                let alloc = context.channel.allocator
                core.pool.submit(.demand) { _ in
                    var b = alloc.buffer(capacity: len)
                    let r = Result<ByteBuffer, Error> {
                        try b.writeWithUnsafeMutableBytes(minimumWritableBytes: len) { out in
                            try ov.read(offset: off, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<len]))
                            return len
                        }
                        return b
                    }
                    back.eventLoop.execute { back.value.connection.arrived(back.value.op, k, r) }
                }
            }
        }
        readAhead(image, req)
        if op.pending == 0 { finish(op) }
    }

    func arrived(_ op: ReadOp, _ k: Int, _ r: Result<ByteBuffer, Error>) {
        switch r {
        case .success(let b): op.data[k] = b
        case .failure(let e): if op.error == nil { op.error = e }
        }
        op.pending -= 1
        if op.pending == 0 { finish(op) }
    }

    /// Starts loading the chunks after a sequential reader's position.
    func readAhead(_ image: ImageReader, _ req: NBDRequest) {
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
    func finish(_ op: ReadOp) {
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
