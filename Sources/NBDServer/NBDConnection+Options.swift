// NBDConnection+Options: what an NBD connection does for the actions of its
// handshake (NBDHandshake): option replies, export lookups off the event
// loop (list, info, go, export name, meta contexts), starting TLS, and the
// step into transmission.
import ChunkStore
import Foundation
import NIOCore
import Presentation

extension NBDConnection {
    /// Does what the handshake decided, in order.
    func perform(_ actions: [NBDHandshake.Action]) {
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

    func replyOption(_ option: UInt32, _ type: UInt32, _ message: String = "") {
        var b = context.channel.allocator.buffer(capacity: 20 + message.utf8.count)
        NBDEncode.optionReply(&b, option: option, type: type, message: message)
        context.writeAndFlush(wrapOutboundOut(b), promise: nil)
    }

    /// Runs blocking work off the event loop, then `then` on it; decoding
    /// pauses meanwhile.
    func offLoop<T: Sendable>(_ work: @escaping @Sendable () throws -> T, then: @escaping (Result<T, Error>) -> Void) {
        waitingForOption = true
        updateFlow()
        let back = NIOLoopBound((connection: self, then: then), eventLoop: eventLoop)
        core.control.async {
            let r = Result { try work() }
            back.eventLoop.execute {
                let (c, then) = back.value
                c.waitingForOption = false
                if c.closed { return }
                then(r)
                c.updateFlow()
            }
        }
    }

    static func message(_ e: Error) -> String {
        if let b = e as? BackyError { return b.message }
        return "\(e)"
    }

    func startTLS() {
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

    func exportName(_ name: String) {
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

    func list() {
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

    func go(_ name: String) {
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

    func info(_ name: String) {
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

    func metaContext(_ code: UInt32, _ name: String, _ contexts: [String], _ set: Bool) {
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

    static func open(_ provider: ExportProvider, _ name: String, _ config: NBDServerConfig,
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

    var transmissionFlags: UInt16 {
        NBDTransmission.flags(writable: writable, structured: structured)
    }

    func writeInfo(_ b: inout ByteBuffer, _ code: UInt32, _ info: ExportInfo) {
        NBDEncode.infoExport(&b, option: code, size: info.size, flags: transmissionFlags)
        NBDEncode.infoString(&b, option: code, info: NBD.infoName, info.name)
        NBDEncode.infoString(&b, option: code, info: NBD.infoDescription, info.description)
        let minBlock: UInt32 = info.size % UInt64(NBDLimits.minBlockSize) == 0 ? NBDLimits.minBlockSize : 1
        NBDEncode.infoBlockSize(&b, option: code, min: minBlock, preferred: NBDLimits.preferredBlockSize,
                                max: UInt32(NBDLimits.maxRequest))
    }

    func enterTransmission(_ ex: OpenExport, _ ov: Overlay?, name: String) {
        export = ex
        overlay = ov
        metaActive = handshake.metaActive(forExport: name)
        control.acceptWrites = writable
        control.admitPayload = { [unowned self] n in admitPayload(n) }
        control.phase = .transmission
        if admitted { core.slots.update(id, inHandshake: false, activity: true) }
        log.info("NBD connection \(id): serving revision \(ex.info.name) (\(ByteFormat.flexible(Int64(ex.info.size)))), \(writable ? "writable overlay" : "read-only")")
    }
}
