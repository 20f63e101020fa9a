// NBDProtocolTests: the server in this process, driven byte by byte over
// TCP: handshake and options, reads with simple and structured replies,
// block status, errors, the writable overlay, concurrency and shutdown.
import ChunkStore
import Foundation
import NBDServer
import TestSupport
import XCTest

final class NBDProtocolTests: XCTestCase {
    let cs = 65536
    lazy var imgA = MemoryImage(size: 16 * cs + 3 * 512, zeroChunks: [1, 2, 7], damaged: [], seed: 1)
    lazy var imgB = MemoryImage(size: 8 * cs, zeroChunks: [0], damaged: [5], seed: 2)
    lazy var exports = MemoryExports([("a", imgA), ("b", imgB)])

    func server(_ tweak: (inout NBDServerConfig) -> Void = { _ in }) throws -> (NBDServer, Int) {
        try TestServer.start(self, exports, tweak)
    }

    func testGreetingListAndInfo() throws {
        let (_, port) = try server()
        let c = try XCTUnwrap(RawClient(port: port))
        XCTAssertEqual(c.greet(), NBD.flagFixedNewstyle | NBD.flagNoZeroes)
        c.option(NBD.optList)
        let list = try XCTUnwrap(c.optionReplies())
        XCTAssertEqual(list.map { $0.type }, [NBD.repServer, NBD.repServer, NBD.repAck])
        let names = list.dropLast().map { r -> String in
            let n = Int(be32(r.data, 0))
            return String(decoding: r.data[4..<(4 + n)], as: UTF8.self)
        }
        XCTAssertEqual(names, ["a", "b"])
        XCTAssertTrue(String(decoding: list[0].data, as: UTF8.self).hasSuffix("memory image a"))
        // LIST with data is invalid; the connection goes on.
        c.option(NBD.optList, [1])
        XCTAssertEqual(c.optionReply()?.type, NBD.repErrInvalid)
        // INFO for an unknown export: an error reply, not a dropped connection.
        c.option(NBD.optInfo, RawClient.infoData("nope"))
        let unknown = try XCTUnwrap(c.optionReplies())
        XCTAssertEqual(unknown.map { $0.type }, [NBD.repErrUnknown])
        XCTAssertTrue(String(decoding: unknown[0].data, as: UTF8.self).contains("nope"))
        // INFO for the default export: size, flags, name, description, block sizes.
        c.option(NBD.optInfo, RawClient.infoData("", [NBD.infoBlockSize]))
        let info = try XCTUnwrap(c.optionReplies())
        XCTAssertEqual(info.last?.type, NBD.repAck)
        var byType: [UInt16: [UInt8]] = [:]
        for r in info where r.type == NBD.repInfo { byType[be16(r.data, 0)] = Array(r.data[2...]) }
        XCTAssertEqual(be64(byType[NBD.infoExport]!, 0), imgB.imageSize)
        XCTAssertNotEqual(be16(byType[NBD.infoExport]!, 8) & NBD.flagReadOnly, 0)
        XCTAssertEqual(String(decoding: byType[NBD.infoName]!, as: UTF8.self), "b")
        XCTAssertEqual(String(decoding: byType[NBD.infoDescription]!, as: UTF8.self), "memory image b")
        let bs = byType[NBD.infoBlockSize]!
        XCTAssertEqual([be32(bs, 0), be32(bs, 4), be32(bs, 8)], [512, 4096, 32 << 20])
        // Unknown options and STARTTLS: UNSUP.
        c.option(5)
        XCTAssertEqual(c.optionReply()?.type, NBD.repErrUnsup)
        c.option(0x1234, [1, 2, 3])
        XCTAssertEqual(c.optionReply()?.type, NBD.repErrUnsup)
        // Meta contexts need structured replies first.
        c.option(NBD.optSetMetaContext, RawClient.metaData("a", ["base:allocation"]))
        XCTAssertEqual(c.optionReply()?.type, NBD.repErrInvalid)
        c.option(NBD.optStructuredReply)
        XCTAssertEqual(c.optionReply()?.type, NBD.repAck)
        c.option(NBD.optListMetaContext, RawClient.metaData("a", []))
        let lm = try XCTUnwrap(c.optionReplies())
        XCTAssertEqual(lm.map { $0.type }, [NBD.repMetaContext, NBD.repAck])
        XCTAssertEqual(String(decoding: lm[0].data[4...], as: UTF8.self), "base:allocation")
        c.option(NBD.optSetMetaContext, RawClient.metaData("a", ["base:allocation", "x-other:thing"]))
        let sm = try XCTUnwrap(c.optionReplies())
        XCTAssertEqual(sm.map { $0.type }, [NBD.repMetaContext, NBD.repAck])
        c.option(NBD.optSetMetaContext, RawClient.metaData("nope", ["base:allocation"]))
        XCTAssertEqual(c.optionReply()?.type, NBD.repErrUnknown)
        // ABORT: ACK, then the server closes.
        c.option(NBD.optAbort)
        XCTAssertEqual(c.optionReply()?.type, NBD.repAck)
        XCTAssertTrue(c.drain().eof)
    }

    func testBadClientFlagsAndBadMagicClose() throws {
        let (_, port) = try server()
        let c1 = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c1.greet(flags: 0x10))
        XCTAssertTrue(c1.drain().eof)
        let c2 = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c2.greet())
        c2.send([UInt8](repeating: 0x41, count: 16))
        XCTAssertTrue(c2.drain().eof)
    }

    func testExportNameUnknownDisconnectsAndKnownWorks() throws {
        let (_, port) = try server()
        let c1 = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c1.greet())
        c1.option(NBD.optExportName, Array("nope".utf8))
        XCTAssertTrue(c1.drain().eof)
        // Old-style client without NO_ZEROES: size, flags and 124 zeros.
        let c2 = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c2.greet(flags: 1))
        c2.option(NBD.optExportName, Array("a".utf8))
        let r = try XCTUnwrap(c2.recv(8 + 2 + 124))
        XCTAssertEqual(be64(r, 0), imgA.imageSize)
        XCTAssertEqual(Array(r[10...]), [UInt8](repeating: 0, count: 124))
        let rd = try XCTUnwrap(c2.read(100, 1000))
        XCTAssertEqual(rd.error, 0)
        XCTAssertEqual(rd.data, Array(imgA.bytes[100..<1100]))
    }

    func testReadsSimpleAndStructured() throws {
        let (_, port) = try server()
        for structured in [false, true] {
            let c = try XCTUnwrap(RawClient(port: port))
            let ex = try XCTUnwrap(c.go("a", structured: structured))
            XCTAssertEqual(ex.size, imgA.imageSize)
            XCTAssertEqual(ex.flags & NBD.flagSendDF != 0, structured)
            // Across data and zero chunks, unaligned, to the end.
            for (off, len) in [(0, 512), (cs - 100, 3 * cs), (cs + 5, 100), (0, Int(imgA.imageSize)),
                               (Int(imgA.imageSize) - 700, 700), (6 * cs, 2 * cs + 17)] {
                let r = try XCTUnwrap(c.read(UInt64(off), len))
                XCTAssertEqual(r.error, 0)
                XCTAssertEqual(r.data, Array(imgA.bytes[off..<(off + len)]), "read \(off)+\(len) structured=\(structured)")
                if structured && off == 0 && len == Int(imgA.imageSize) {
                    XCTAssertTrue(r.chunkTypes.contains(NBD.replyTypeOffsetHole), "zero chunks are sent as holes")
                }
            }
            if structured {
                // DF: exactly one data chunk, zeros included.
                let r = try XCTUnwrap(c.read(0, 4 * cs, flags: NBD.cmdFlagDF))
                XCTAssertEqual(r.chunkTypes, [NBD.replyTypeOffsetData])
                XCTAssertEqual(r.data, Array(imgA.bytes[0..<(4 * cs)]))
            }
            // Zero length read: success, no data.
            let z = try XCTUnwrap(c.read(10, 0))
            XCTAssertEqual(z.error, 0)
            // Past the end and oversized: EINVAL, the connection stays.
            XCTAssertEqual(c.read(imgA.imageSize - 512, 1024)?.error, NBD.EINVAL)
            XCTAssertEqual(c.read(UInt64.max - 100, 512)?.error, NBD.EINVAL)
            XCTAssertEqual(c.read(0, (32 << 20) + 512)?.error, NBD.EINVAL)
            XCTAssertEqual(c.read(0, 512, flags: 0x40)?.error, NBD.EINVAL)
            // Writes on a read-only export: EPERM (the payload is skipped).
            c.request(NBD.cmdWrite, handle: 20, offset: 0, length: 4096, payload: [UInt8](repeating: 1, count: 4096))
            XCTAssertEqual(c.reply()?.error, NBD.EPERM)
            c.request(NBD.cmdTrim, handle: 21, offset: 0, length: 4096)
            XCTAssertEqual(c.reply()?.error, NBD.EPERM)
            c.request(NBD.cmdWriteZeroes, handle: 22, offset: 0, length: 4096)
            XCTAssertEqual(c.reply()?.error, NBD.EPERM)
            c.request(NBD.cmdFlush, handle: 23, offset: 0, length: 0)
            XCTAssertEqual(c.reply()?.error, 0)
            c.request(NBD.cmdCache, handle: 24, offset: 0, length: 1 << 20)
            XCTAssertEqual(c.reply()?.error, 0)
            c.request(99, handle: 25, offset: 0, length: 0)
            XCTAssertEqual(c.reply()?.error, NBD.EINVAL)
            XCTAssertEqual(c.read(0, 512)?.data, Array(imgA.bytes[0..<512]))
            c.request(NBD.cmdDisc, handle: 26, offset: 0, length: 0)
            XCTAssertTrue(c.drain().eof)
        }
        XCTAssertTrue(imgA.violations.get.isEmpty)
    }

    func testBlockStatus() throws {
        let (_, port) = try server()
        let c = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c.go("a"))
        c.request(NBD.cmdBlockStatus, handle: 1, offset: 0, length: UInt32(imgA.imageSize))
        let r = try XCTUnwrap(c.reply())
        let hz = NBD.stateHole | NBD.stateZero
        XCTAssertEqual(r.extents, [NBDExtent(length: UInt32(cs), flags: 0), NBDExtent(length: UInt32(2 * cs), flags: hz),
                                   NBDExtent(length: UInt32(4 * cs), flags: 0), NBDExtent(length: UInt32(cs), flags: hz),
                                   NBDExtent(length: UInt32(8 * cs + 1536), flags: 0)])
        c.request(NBD.cmdBlockStatus, flags: NBD.cmdFlagReqOne, handle: 2, offset: UInt64(cs), length: 4096)
        XCTAssertEqual(c.reply()?.extents, [NBDExtent(length: 4096, flags: hz)])
        c.request(NBD.cmdBlockStatus, handle: 3, offset: imgA.imageSize, length: 512)
        XCTAssertEqual(c.reply()?.error, NBD.EINVAL)
        // Without a negotiated context: EINVAL.
        let c2 = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c2.go("a", structured: true, meta: false))
        c2.request(NBD.cmdBlockStatus, handle: 1, offset: 0, length: 512)
        XCTAssertEqual(c2.reply()?.error, NBD.EINVAL)
        // Context negotiated for another export name: EINVAL too.
        let c3 = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c3.greet())
        c3.option(NBD.optStructuredReply)
        XCTAssertEqual(c3.optionReply()?.type, NBD.repAck)
        c3.option(NBD.optSetMetaContext, RawClient.metaData("b", ["base:allocation"]))
        XCTAssertEqual(c3.optionReplies()?.last?.type, NBD.repAck)
        c3.option(NBD.optGo, RawClient.infoData("a"))
        XCTAssertEqual(c3.optionReplies()?.last?.type, NBD.repAck)
        c3.structured = true
        c3.request(NBD.cmdBlockStatus, handle: 1, offset: 0, length: 512)
        XCTAssertEqual(c3.reply()?.error, NBD.EINVAL)
    }

    func testDamagedChunkFailsOnlyThatRequest() throws {
        let (_, port) = try server()
        for structured in [false, true] {
            let c = try XCTUnwrap(RawClient(port: port))
            XCTAssertNotNil(c.go("b", structured: structured))
            let bad = try XCTUnwrap(c.read(UInt64(5 * cs + 100), 1000))
            XCTAssertEqual(bad.error, NBD.EIO)
            if structured { XCTAssertTrue(bad.message.contains("damaged"), bad.message) }
            let across = try XCTUnwrap(c.read(UInt64(4 * cs), 2 * cs))
            XCTAssertEqual(across.error, NBD.EIO)
            let good = try XCTUnwrap(c.read(UInt64(4 * cs), cs))
            XCTAssertEqual(good.error, 0)
            XCTAssertEqual(good.data, Array(imgB.bytes[(4 * cs)..<(5 * cs)]))
        }
    }

    func testPipelinedRequestsAreAnsweredOutOfOrder() throws {
        let (_, port) = try server { $0.cacheChunks = 2 }
        let c = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c.go("a"))
        // A read of a chunk whose load is held back, then a read of another
        // chunk: the second is answered first, and the first once released.
        let gate = DispatchSemaphore(value: 0)
        imgA.hold(4, until: gate)
        let slow: (offset: UInt64, length: Int) = (UInt64(4 * cs + 512), 1024), fast: (offset: UInt64, length: Int) = (0, 2048)
        c.request(NBD.cmdRead, handle: 1001, offset: slow.offset, length: UInt32(slow.length))
        c.request(NBD.cmdRead, handle: 1002, offset: fast.offset, length: UInt32(fast.length))
        let first = try XCTUnwrap(c.reply(readLengths: [1001: slow, 1002: fast]))
        gate.signal()
        let second = try XCTUnwrap(c.reply(readLengths: [1001: slow, 1002: fast]))
        XCTAssertEqual([first.handle, second.handle], [1002, 1001], "the later request is answered first")
        XCTAssertEqual(first.data, Array(imgA.bytes[0..<fast.length]))
        XCTAssertEqual(second.data, Array(imgA.bytes[Int(slow.offset)..<(Int(slow.offset) + slow.length)]))
        // Many pipelined reads: each answered once, with its own bytes.
        var expect: [UInt64: (offset: UInt64, length: Int)] = [:]
        var rng = TestSeed.rng(name)
        for h in 0..<200 {
            let off = UInt64.random(in: 0..<(imgA.imageSize - 512), using: &rng) & ~511
            let len = Int.random(in: 1...min(64, Int(imgA.imageSize - off) / 512), using: &rng) * 512
            expect[UInt64(h)] = (off, len)
            c.request(NBD.cmdRead, handle: UInt64(h), offset: off, length: UInt32(len))
        }
        var seen = Set<UInt64>()
        for _ in 0..<200 {
            let r = try XCTUnwrap(c.reply(readLengths: expect))
            XCTAssertEqual(r.error, 0)
            let e = try XCTUnwrap(expect[r.handle], "reply for unknown handle \(r.handle)")
            XCTAssertEqual(r.data, Array(imgA.bytes[Int(e.offset)..<(Int(e.offset) + e.length)]))
            XCTAssertTrue(seen.insert(r.handle).inserted)
        }
        XCTAssertEqual(seen.count, 200)
        XCTAssertTrue(imgA.violations.get.isEmpty)
    }

    func testHugeOptionGetsTooBigAndConnectionContinues() throws {
        let (_, port) = try server()
        let c = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c.greet())
        let len = 48 << 20
        c.send(u64(NBD.optMagic) + u32(NBD.optGo) + u32(UInt32(len)))
        let junk = [UInt8](repeating: 0x77, count: 1 << 20)
        for _ in 0..<(len >> 20) { XCTAssertTrue(c.send(junk)) }
        XCTAssertEqual(c.optionReply()?.type, NBD.repErrTooBig)
        c.option(NBD.optGo, RawClient.infoData("a"))
        XCTAssertEqual(c.optionReplies()?.last?.type, NBD.repAck)
        XCTAssertEqual(c.read(0, 512)?.data, Array(imgA.bytes[0..<512]))
    }

    func testWritableOverlayIsPerConnectionAndThrownAway() throws {
        let (_, port) = try server { $0.writable = true }
        let c = try XCTUnwrap(RawClient(port: port))
        let ex = try XCTUnwrap(c.go("a"))
        XCTAssertEqual(ex.flags & NBD.flagReadOnly, 0)
        XCTAssertNotEqual(ex.flags & NBD.flagSendWriteZeroes, 0)
        var model = imgA.bytes
        let data = [UInt8](repeating: 0xC3, count: 3000)
        c.request(NBD.cmdWrite, handle: 1, offset: UInt64(cs - 1000), length: 3000, payload: data)
        XCTAssertEqual(c.reply()?.error, 0)
        model.replaceSubrange((cs - 1000)..<(cs + 2000), with: data)
        c.request(NBD.cmdWriteZeroes, handle: 2, offset: 100, length: 20000)
        XCTAssertEqual(c.reply()?.error, 0)
        for i in 100..<20100 { model[i] = 0 }
        c.request(NBD.cmdTrim, handle: 3, offset: UInt64(10 * cs), length: UInt32(cs))
        XCTAssertEqual(c.reply()?.error, 0)
        for i in (10 * cs)..<(11 * cs) { model[i] = 0 }
        c.request(NBD.cmdWrite, handle: 4, offset: imgA.imageSize - 512, length: 1024, payload: [UInt8](repeating: 1, count: 1024))
        XCTAssertEqual(c.reply()?.error, NBD.ENOSPC)
        c.request(NBD.cmdFlush, handle: 5, offset: 0, length: 0)
        XCTAssertEqual(c.reply()?.error, 0)
        let all = try XCTUnwrap(c.read(0, Int(imgA.imageSize)))
        XCTAssertEqual(all.data, model)
        // Written blocks in a zero chunk are data now.
        c.request(NBD.cmdBlockStatus, handle: 6, offset: UInt64(cs), length: UInt32(cs))
        XCTAssertEqual(c.reply()?.extents.first, NBDExtent(length: 4096, flags: 0))
        // Another connection sees the revision unchanged.
        let c2 = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c2.go("a"))
        XCTAssertEqual(c2.read(0, Int(imgA.imageSize))?.data, imgA.bytes)
        // After a disconnect the overlay is gone.
        c.request(NBD.cmdDisc, handle: 7, offset: 0, length: 0)
        XCTAssertTrue(c.drain().eof)
        let c3 = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c3.go("a"))
        XCTAssertEqual(c3.read(0, Int(imgA.imageSize))?.data, imgA.bytes)
    }

    func testIdleHandshakeTimesOutAndConnectionLimitHolds() throws {
        let (s, port) = try server {
            $0.handshakeTimeout = 1
            $0.maxConnections = 2
        }
        let idle = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(idle.greet())
        let busy = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(busy.go("a"))
        // A third connection is refused while two are open.
        let third = try XCTUnwrap(RawClient(port: port))
        XCTAssertTrue(third.drain().eof)
        // The idle one is dropped after the timeout; the serving one stays.
        let t0 = Date()
        XCTAssertTrue(idle.drain().eof)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 4)
        XCTAssertEqual(busy.read(0, 512)?.data, Array(imgA.bytes[0..<512]))
        // The refused and the timed-out connection are gone once closed.
        XCTAssertTrue(waitUntil(timeout: 5) { s.connectionCount == 1 }, "connections: \(s.connectionCount)")
    }

    func testStopClosesConnectionsAndReleasesExports() throws {
        let (s, port) = try server()
        var clients: [RawClient] = []
        for _ in 0..<3 {
            let c = try XCTUnwrap(RawClient(port: port))
            XCTAssertNotNil(c.go("a"))
            clients.append(c)
        }
        let idle = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(idle.greet())
        XCTAssertEqual(exports.opened.get, 3)
        s.stop()
        for (k, c) in (clients + [idle]).enumerated() {
            let d = c.drain()
            XCTAssertTrue(d.eof, "client \(k): \(d.bytes) bytes, errno \(errno)")
        }
        XCTAssertEqual(exports.closed.get, 3)
        XCTAssertNil(RawClient(port: port), "no longer listening")
    }

    func testClientThatDoesNotReadRepliesIsThrottled() throws {
        let (s, port) = try server { $0.maxInflightBytes = 4 << 20 }
        let c = try XCTUnwrap(RawClient(port: port))
        XCTAssertNotNil(c.go("a", structured: true))
        // Reads of 1 MiB sent without reading a byte of the replies: once
        // its limits are reached the server stops reading requests, so the
        // client cannot even send 16 MiB of request headers.
        var batch: [UInt8] = []
        for h in 0..<(1 << 20) / 28 {
            batch += u32(NBD.requestMagic) + u16(0) + u16(NBD.cmdRead) + u64(UInt64(h)) + u64(0) + u32(UInt32(1 << 20))
        }
        c.setTimeout(1)
        var sentMiB = 0
        for _ in 0..<16 {
            if !c.send(batch) { break }
            sentMiB += 1
        }
        XCTAssertLessThan(sentMiB, 16, "the server stopped reading requests")
        XCTAssertEqual(s.connectionCount, 1)
    }
}
