// NBDWireTests: the NBD wire format: constants against the protocol
// document, option payload parsing, meta context queries, the decoder's
// bounded handling of huge options and writes.
import ChunkStore
import NBDServer
import NIOCore
import XCTest

final class NBDWireTests: XCTestCase {
    func testConstantsMatchProtocolDocument() {
        XCTAssertEqual(NBD.initMagic, 0x4e42_444d_4147_4943)
        XCTAssertEqual(NBD.optMagic, 0x4948_4156_454f_5054)
        XCTAssertEqual(NBD.repMagic, 0x3_e889_0455_65a9)
        XCTAssertEqual(NBD.requestMagic, 0x2560_9513)
        XCTAssertEqual(NBD.simpleReplyMagic, 0x6744_6698)
        XCTAssertEqual(NBD.structuredReplyMagic, 0x668e_33ef)
        XCTAssertEqual([NBD.optExportName, NBD.optAbort, NBD.optList, NBD.optStartTLS, NBD.optInfo, NBD.optGo,
                        NBD.optStructuredReply, NBD.optListMetaContext, NBD.optSetMetaContext], [1, 2, 3, 5, 6, 7, 8, 9, 10])
        XCTAssertEqual([NBD.repAck, NBD.repServer, NBD.repInfo, NBD.repMetaContext], [1, 2, 3, 4])
        XCTAssertEqual(NBD.repErrUnsup, 0x8000_0001)
        XCTAssertEqual(NBD.repErrUnknown, 0x8000_0006)
        XCTAssertEqual(NBD.repErrTooBig, 0x8000_0009)
        XCTAssertEqual([NBD.cmdRead, NBD.cmdWrite, NBD.cmdDisc, NBD.cmdFlush, NBD.cmdTrim, NBD.cmdCache,
                        NBD.cmdWriteZeroes, NBD.cmdBlockStatus], [0, 1, 2, 3, 4, 5, 6, 7])
        XCTAssertEqual(NBD.replyTypeError, 32769)
        XCTAssertEqual(NBD.flagCanMultiConn, 256)
        XCTAssertEqual(NBD.flagSendCache, 1024)
    }

    func testTransmissionFlags() {
        let ro = NBDTransmission.flags(writable: false, structured: true)
        XCTAssertNotEqual(ro & NBD.flagReadOnly, 0)
        XCTAssertNotEqual(ro & NBD.flagCanMultiConn, 0)
        XCTAssertNotEqual(ro & NBD.flagSendDF, 0)
        XCTAssertEqual(ro & NBD.flagSendTrim, 0)
        let rw = NBDTransmission.flags(writable: true, structured: false)
        XCTAssertEqual(rw & NBD.flagReadOnly, 0)
        XCTAssertEqual(rw & NBD.flagSendDF, 0, "DF needs structured replies")
        XCTAssertNotEqual(rw & NBD.flagSendWriteZeroes, 0)
        XCTAssertEqual(rw & NBD.flagCanMultiConn, 0, "overlays are per connection")
    }

    private func buf(_ bytes: [UInt8]) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: bytes.count)
        b.writeBytes(bytes)
        return b
    }

    func testInfoRequestParsing() {
        let ok = RawClient.infoData("abc", [3, 1])
        let r = NBDOptionParser.infoRequest(buf(ok))
        XCTAssertEqual(r?.name, "abc")
        XCTAssertEqual(r?.requests, [3, 1])
        XCTAssertEqual(NBDOptionParser.infoRequest(buf(RawClient.infoData("")))?.name, "")
        // Truncated, trailing bytes, name longer than the data, NUL, bad UTF-8, too long.
        XCTAssertNil(NBDOptionParser.infoRequest(buf(Array(ok.dropLast()))))
        XCTAssertNil(NBDOptionParser.infoRequest(buf(ok + [0])))
        XCTAssertNil(NBDOptionParser.infoRequest(buf(u32(100) + Array("abc".utf8) + u16(0))))
        XCTAssertNil(NBDOptionParser.infoRequest(buf(u32(0xFFFF_FFFF) + u16(0))))
        XCTAssertNil(NBDOptionParser.infoRequest(buf(u32(2) + [0x61, 0] + u16(0))))
        XCTAssertNil(NBDOptionParser.infoRequest(buf(u32(2) + [0xC3, 0x28] + u16(0))))
        let long = String(repeating: "x", count: 4097)
        XCTAssertNil(NBDOptionParser.infoRequest(buf(RawClient.infoData(long))))
        XCTAssertNil(NBDOptionParser.infoRequest(buf([])))
    }

    func testMetaContextParsing() {
        let d = RawClient.metaData("rev", ["base:allocation", "qemu:dirty-bitmap:x"])
        let r = NBDOptionParser.metaContextRequest(buf(d))
        XCTAssertEqual(r?.name, "rev")
        XCTAssertEqual(r?.queries, ["base:allocation", "qemu:dirty-bitmap:x"])
        XCTAssertNil(NBDOptionParser.metaContextRequest(buf(Array(d.dropLast()))))
        XCTAssertNil(NBDOptionParser.metaContextRequest(buf(d + [1])))
        // A query count far beyond the data is rejected without allocating.
        XCTAssertNil(NBDOptionParser.metaContextRequest(buf(u32(0) + u32(0xFFFF_FFFF))))
        XCTAssertEqual(NBDOptionParser.metaContextRequest(buf(u32(0) + u32(0)))?.queries, [])
    }

    func testMetaContextMatching() {
        XCTAssertEqual(NBDMetaContext.match("base:allocation", listing: false), ["base:allocation"])
        XCTAssertEqual(NBDMetaContext.match("base:", listing: true), ["base:allocation"])
        XCTAssertEqual(NBDMetaContext.match("base:", listing: false), [])
        XCTAssertEqual(NBDMetaContext.match("base:other", listing: false), [])
        XCTAssertEqual(NBDMetaContext.match("qemu:dirty-bitmap:a", listing: false), [])
        XCTAssertNil(NBDMetaContext.match("allocation", listing: false))
        XCTAssertNil(NBDMetaContext.match(":x", listing: true))
    }

    func testRequestRange() {
        let r = NBDRequest(flags: 0, type: 0, handle: 1, offset: UInt64.max - 10, length: 100)
        XCTAssertNil(r.end)
        XCTAssertFalse(r.fits(size: UInt64.max))
        XCTAssertTrue(NBDRequest(flags: 0, type: 0, handle: 1, offset: 10, length: 90).fits(size: 100))
        XCTAssertFalse(NBDRequest(flags: 0, type: 0, handle: 1, offset: 10, length: 91).fits(size: 100))
    }

    // MARK: decoder

    func testDecoderSkipsHugeOptionWithoutBuffering() {
        let control = NBDDecoderControl()
        control.phase = .options
        let dec = NBDDecoder(control: control)
        var b = buf(u64(NBD.optMagic) + u32(NBD.optGo) + u32(20 << 20))
        XCTAssertNil(dec.next(&b))
        XCTAssertEqual(b.readableBytes, 0)
        // Feed 8 MiB of junk in 1 MiB pieces: consumed as it comes.
        var total: UInt64 = 0
        for _ in 0..<8 {
            var junk = buf([UInt8](repeating: 0xAB, count: 1 << 20))
            XCTAssertNil(dec.next(&junk))
            XCTAssertEqual(junk.readableBytes, 0, "skipped bytes are not kept")
            total += 1 << 20
        }
        // The rest arrives: then the option is reported as too big.
        var rest = buf([UInt8](repeating: 0, count: (20 << 20) - Int(total)) + u64(NBD.optMagic) + u32(NBD.optAbort) + u32(0))
        guard case .optionTooBig(let code, let len)? = dec.next(&rest) else { return XCTFail("expected optionTooBig") }
        XCTAssertEqual(code, NBD.optGo)
        XCTAssertEqual(len, 20 << 20)
        guard case .option(let c2, _)? = dec.next(&rest) else { return XCTFail("expected the next option") }
        XCTAssertEqual(c2, NBD.optAbort)
    }

    func testDecoderSkipsWritePayloadOnReadOnlyExport() {
        let control = NBDDecoderControl()
        control.phase = .transmission
        control.acceptWrites = false
        let dec = NBDDecoder(control: control)
        var b = ByteBufferAllocator().buffer(capacity: 64)
        NBDRequest(flags: 0, type: NBD.cmdWrite, handle: 9, offset: 0, length: 1000).write(to: &b)
        b.writeBytes([UInt8](repeating: 1, count: 400))
        XCTAssertNil(dec.next(&b))
        XCTAssertEqual(b.readableBytes, 0)
        var more = buf([UInt8](repeating: 1, count: 600))
        NBDRequest(flags: 0, type: NBD.cmdFlush, handle: 10, offset: 0, length: 0).write(to: &more)
        guard case .requestPayloadSkipped(let r)? = dec.next(&more) else { return XCTFail("expected skipped write") }
        XCTAssertEqual(r.handle, 9)
        guard case .request(let f, nil)? = dec.next(&more) else { return XCTFail("expected flush") }
        XCTAssertEqual(f.type, NBD.cmdFlush)
    }

    func testDecoderTakesWritePayloadWhenWritable() {
        let control = NBDDecoderControl()
        control.phase = .transmission
        control.acceptWrites = true
        let dec = NBDDecoder(control: control)
        var b = ByteBufferAllocator().buffer(capacity: 64)
        NBDRequest(flags: 0, type: NBD.cmdWrite, handle: 9, offset: 512, length: 8).write(to: &b)
        b.writeBytes([1, 2, 3])
        XCTAssertNil(dec.next(&b), "waits for the whole payload")
        b.writeBytes([4, 5, 6, 7, 8])
        guard case .request(let r, let p?)? = dec.next(&b) else { return XCTFail("expected write") }
        XCTAssertEqual(r.offset, 512)
        XCTAssertEqual(p.readableBytes, 8)
    }

    func testDecoderStopsOnBadMagicAndWhenPaused() {
        let control = NBDDecoderControl()
        control.phase = .transmission
        let dec = NBDDecoder(control: control)
        var b = ByteBufferAllocator().buffer(capacity: 64)
        NBDRequest(flags: 0, type: NBD.cmdRead, handle: 1, offset: 0, length: 512).write(to: &b)
        control.paused = true
        XCTAssertNil(dec.next(&b))
        XCTAssertEqual(b.readableBytes, 28)
        control.paused = false
        guard case .request? = dec.next(&b) else { return XCTFail("expected request") }
        var bad = buf([UInt8](repeating: 0x55, count: 28))
        guard case .violation? = dec.next(&bad) else { return XCTFail("expected violation") }
        XCTAssertEqual(control.phase, .stopped)
    }
}
