// NBDWireTests: the pure parts of the NBD server: constants against the
// protocol document, option payload parsing, meta context queries, the
// decoder's bounded handling of huge options and writes, block status
// extents, and the overlay's block map.
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

    // MARK: block status

    func testExtentsMergeAndRespectReqOne() {
        let img = MemoryImage(size: 10 * 65536 + 1000, zeroChunks: [1, 2, 5])
        let all = BlockStatus.extents(image: img, overlay: nil, offset: 0, length: UInt32(img.imageSize), reqOne: false)
        let hz = NBD.stateHole | NBD.stateZero
        XCTAssertEqual(all, [NBDExtent(length: 65536, flags: 0), NBDExtent(length: 131072, flags: hz),
                             NBDExtent(length: 131072, flags: 0), NBDExtent(length: 65536, flags: hz),
                             NBDExtent(length: 4 * 65536 + 1000, flags: 0)])
        XCTAssertEqual(all.reduce(0) { $0 + UInt64($1.length) }, img.imageSize)
        let part = BlockStatus.extents(image: img, overlay: nil, offset: 70000, length: 100000, reqOne: false)
        XCTAssertEqual(part, [NBDExtent(length: 100000, flags: hz)])
        let one = BlockStatus.extents(image: img, overlay: nil, offset: 1000, length: 200000, reqOne: true)
        XCTAssertEqual(one, [NBDExtent(length: 65536 - 1000, flags: 0)])
        let one2 = BlockStatus.extents(image: img, overlay: nil, offset: 65536, length: 4096, reqOne: true)
        XCTAssertEqual(one2, [NBDExtent(length: 4096, flags: hz)])
    }

    // MARK: overlay

    func testOverlayReadModifyWriteAndRuns() throws {
        let img = MemoryImage(size: 4 * 65536 + 512, zeroChunks: [2])
        let ov = try Overlay(size: img.imageSize, chunkSize: img.chunkSize, directory: NSTemporaryDirectory())
        let base: Overlay.BaseReader = { off, out in
            img.bytes.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(off)..<(Int(off) + out.count)])) }
        }
        var model = img.bytes
        // Unaligned write spanning two 4 KiB blocks.
        let data = [UInt8](repeating: 0x5A, count: 5000)
        try data.withUnsafeBytes { try ov.write(offset: 3000, data: $0, base: base) }
        model.replaceSubrange(3000..<8000, with: data)
        XCTAssertEqual(ov.runs(offset: 0, length: 65536).map { $0.inOverlay }, [true, false])
        XCTAssertEqual(ov.runs(offset: 0, length: 65536).first?.length, 8192)
        // Zero a range inside the zero chunk and across the image end.
        try ov.zero(offset: 2 * 65536 + 100, length: 10, base: base)
        try ov.zero(offset: 4 * 65536 - 100, length: 612, base: base)
        for i in (4 * 65536 - 100)..<(4 * 65536 + 512) { model[i] = 0 }
        // Every byte reads back as the model says.
        for r in ov.runs(offset: 0, length: img.imageSize) {
            var got = [UInt8](repeating: 0, count: Int(r.length))
            if r.inOverlay {
                try got.withUnsafeMutableBytes { try ov.read(offset: r.offset, into: $0) }
            } else {
                try got.withUnsafeMutableBytes { try base(r.offset, $0) }
            }
            XCTAssertEqual(got, Array(model[Int(r.offset)..<Int(r.offset + r.length)]), "run at \(r.offset)")
        }
        // Overlay blocks are data in block status.
        let ext = BlockStatus.extents(image: img, overlay: ov, offset: 2 * 65536, length: 65536, reqOne: false)
        XCTAssertEqual(ext.first, NBDExtent(length: 4096, flags: 0))
        XCTAssertEqual(ext.last, NBDExtent(length: 65536 - 4096, flags: NBD.stateHole | NBD.stateZero))
    }

    func testChunkCacheIsBoundedAndLoadsOnce() throws {
        let img = MemoryImage(size: 40 * 65536)
        let pool = WorkerPool(threads: 2)
        defer { pool.shutdown() }
        let cache = ChunkCache(capacity: 4, pool: pool)
        // Eight threads ask for one chunk while its load is held back: one
        // load, and every caller gets the chunk's bytes.
        let gate = DispatchSemaphore(value: 0)
        img.hold(5, until: gate)
        let got = Locked<[[UInt8]]>([])
        let waiting = DispatchGroup()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            waiting.enter()
            let now = cache.get(img, 5) { r in
                switch r {
                case .success(let b): got.with { $0.append(Array(b.readableBytesView)) }
                case .failure(let e): XCTFail("\(e)")
                }
                waiting.leave()
            }
            if let b = now {
                got.with { $0.append(Array(b.readableBytesView)) }
                waiting.leave()
            }
        }
        XCTAssertEqual(img.reads.get, 0, "the load is held")
        gate.signal()
        XCTAssertEqual(waiting.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(img.reads.get, 1, "one load for eight concurrent gets of one chunk")
        XCTAssertEqual(got.get.count, 8)
        XCTAssertTrue(got.get.allSatisfy { $0 == Array(img.bytes[(5 * 65536)..<(6 * 65536)]) })
        // Once cached it is not loaded again.
        XCTAssertNotNil(cache.get(img, 5) { _ in XCTFail("cached chunk loaded again") })
        XCTAssertEqual(img.reads.get, 1)
        img.reads.with { $0 = 0 }

        // Many chunks, many times: the cache stays within its capacity.
        let group = DispatchGroup()
        for _ in 0..<3 {
            for c in 0..<20 {
                group.enter()
                if cache.get(img, c, { r in
                    if case .failure(let e) = r { XCTFail("\(e)") }
                    group.leave()
                }) != nil { group.leave() }
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 10), .success)
        XCTAssertLessThanOrEqual(cache.count, 4)
        XCTAssertLessThanOrEqual(img.reads.get, 60, "at most one load per get")
        XCTAssertGreaterThanOrEqual(img.reads.get, 19, "every chunk loaded (chunk 5 may still be cached)")
        XCTAssertTrue(img.violations.get.isEmpty)
    }
}
