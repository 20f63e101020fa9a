// NBDReadPlanTests: the pure read plan of the NBD server (NBDReadPlan): how
// a read is cut into zeros, chunk slices and overlay runs, what it may pin
// of the reply budget, and the exact bytes of its simple, DF and structured
// replies, checked against a reply parsed back field by field.
import ChunkStore
import Foundation
import NIOCore
import XCTest
@testable import NBDServer

final class NBDReadPlanTests: XCTestCase {
    typealias Segment = NBDReadPlan.Segment

    /// 16-byte chunks; chunks 1 and 2 are zeros; chunk 3 has overlay data
    /// at 52..<56.
    func plan(_ offset: UInt64, _ length: Int) -> [Segment] {
        NBDReadPlan.segments(offset: offset, length: length, chunkSize: 16, isZero: { $0 == 1 || $0 == 2 },
                             overlayRuns: { c, from, to in
                                 guard c == 3 else { return nil }
                                 var runs: [NBDReadPlan.OverlayRun] = []
                                 if from < 52 { runs.append((from, min(to, 52) - from, false)) }
                                 if from < 56 && to > 52 { runs.append((max(from, 52), min(to, 56) - max(from, 52), true)) }
                                 if to > 56 { runs.append((max(from, 56), to - max(from, 56), false)) }
                                 return runs
                             })
    }

    func testSegmentsCutAtChunksMergeZerosAndFollowTheOverlay() {
        // Half of chunk 0, zero chunks 1 and 2 as one run, chunk 3 around
        // its overlay run, the start of chunk 4.
        XCTAssertEqual(plan(8, 60), [
            .chunk(index: 0, inChunk: 8, offset: 8, length: 8),
            .zero(offset: 16, length: 32),
            .chunk(index: 3, inChunk: 0, offset: 48, length: 4),
            .overlay(offset: 52, length: 4),
            .chunk(index: 3, inChunk: 8, offset: 56, length: 8),
            .chunk(index: 4, inChunk: 0, offset: 64, length: 4),
        ])
        // Inside one chunk; inside the zeros; exactly the overlay run.
        XCTAssertEqual(plan(3, 5), [.chunk(index: 0, inChunk: 3, offset: 3, length: 5)])
        XCTAssertEqual(plan(20, 20), [.zero(offset: 20, length: 20)])
        XCTAssertEqual(plan(52, 4), [.overlay(offset: 52, length: 4)])
        // Every byte is planned exactly once, in order.
        for (off, len) in [(0, 80), (15, 2), (47, 10), (51, 6)] {
            var pos = UInt64(off)
            for s in plan(UInt64(off), len) {
                XCTAssertEqual(s.offset, pos, "read \(off)+\(len)")
                pos += UInt64(s.length)
            }
            XCTAssertEqual(pos, UInt64(off + len), "read \(off)+\(len)")
        }
    }

    func testCostCountsCopiesAndWholeChunkBuffers() {
        let limit = ReplyWriter.copyLimit
        XCTAssertEqual(NBDReadPlan.cost([.zero(offset: 0, length: 10 * limit)]), limit)
        XCTAssertEqual(NBDReadPlan.cost([.chunk(index: 0, inChunk: 0, offset: 0, length: limit - 1)]), limit - 1)
        XCTAssertEqual(NBDReadPlan.cost([.chunk(index: 0, inChunk: 0, offset: 0, length: limit)]), ChunkMemory.slabSize)
        XCTAssertEqual(NBDReadPlan.cost([.overlay(offset: 0, length: 5), .zero(offset: 5, length: 7)]), 12)
    }

    /// The three segments' bytes: chunk 0 holds 0...15, chunk 3 holds
    /// 48...63, the overlay run "OVER".
    func data(for segs: [Segment]) -> [ByteBuffer?] {
        segs.map { s -> ByteBuffer? in
            switch s {
            case .zero: return nil
            case .chunk(let c, _, _, _): return ByteBuffer(bytes: (0..<16).map { UInt8(c * 16 + $0) })
            case .overlay: return ByteBuffer(bytes: Array("OVER".utf8))
            }
        }
    }

    /// The image's bytes as the reply must carry them.
    func expected(_ offset: Int, _ length: Int) -> [UInt8] {
        (offset..<offset + length).map { o in
            if o >= 16 && o < 48 { return 0 }
            if o >= 52 && o < 56 { return Array("OVER".utf8)[o - 52] }
            return UInt8(o)
        }
    }

    func bytes(_ buffers: [ByteBuffer]) -> [UInt8] {
        buffers.flatMap { Array($0.readableBytesView) }
    }

    func testSimpleReplyIsHeaderAndEveryByte() {
        let req = NBDRequest(flags: 0, type: NBD.cmdRead, handle: 0x1122, offset: 8, length: 60)
        let segs = plan(8, 60)
        let (buffers, cost) = NBDReadPlan.reply(to: req, structured: false, segments: segs, data: data(for: segs),
                                                allocator: ByteBufferAllocator())
        XCTAssertEqual(bytes(buffers), u32(NBD.simpleReplyMagic) + u32(0) + u32(0) + u32(0x1122) + expected(8, 60))
        XCTAssertEqual(cost, 60, "every piece is small: all of it is copied")
    }

    func testDFReplyIsOneDataChunk() {
        let req = NBDRequest(flags: NBD.cmdFlagDF, type: NBD.cmdRead, handle: 7, offset: 8, length: 60)
        let segs = plan(8, 60)
        let (buffers, _) = NBDReadPlan.reply(to: req, structured: true, segments: segs, data: data(for: segs),
                                             allocator: ByteBufferAllocator())
        let head = u32(NBD.structuredReplyMagic) + u16(NBD.replyFlagDone) + u16(NBD.replyTypeOffsetData)
            + u32(0) + u32(7) + u32(8 + 60) + u32(0) + u32(8)
        XCTAssertEqual(bytes(buffers), head + expected(8, 60))
    }

    func testStructuredReplyHasDataAndHoleChunksAndOneDone() {
        let req = NBDRequest(flags: 0, type: NBD.cmdRead, handle: 9, offset: 8, length: 60)
        let segs = plan(8, 60)
        let (buffers, _) = NBDReadPlan.reply(to: req, structured: true, segments: segs, data: data(for: segs),
                                             allocator: ByteBufferAllocator())
        func header(_ flags: UInt16, _ type: UInt16, _ length: UInt32) -> [UInt8] {
            u32(NBD.structuredReplyMagic) + u16(flags) + u16(type) + u32(0) + u32(9) + u32(length)
        }
        let want = header(0, NBD.replyTypeOffsetData, 8 + 8) + u32(0) + u32(8) + expected(8, 8)
            + header(0, NBD.replyTypeOffsetHole, 12) + u32(0) + u32(16) + u32(32)
            + header(NBD.replyFlagDone, NBD.replyTypeOffsetData, 8 + 20) + u32(0) + u32(48) + expected(48, 20)
        XCTAssertEqual(bytes(buffers), want)
    }

    func testLargeSlicesAreSentAsTheyAreAndCostTheirBuffer() {
        let cs = 1 << 20
        let segs = NBDReadPlan.segments(offset: 4096, length: cs, chunkSize: cs, isZero: { _ in false },
                                        overlayRuns: { _, _, _ in nil })
        XCTAssertEqual(segs, [.chunk(index: 0, inChunk: 4096, offset: 4096, length: cs - 4096),
                              .chunk(index: 1, inChunk: 0, offset: UInt64(cs), length: 4096)])
        var chunk0 = ByteBufferAllocator().buffer(capacity: cs)
        chunk0.writeBytes((0..<cs).map { UInt8(truncatingIfNeeded: $0 * 7) })
        var chunk1 = ByteBufferAllocator().buffer(capacity: cs)
        chunk1.writeBytes((0..<cs).map { UInt8(truncatingIfNeeded: $0 * 13) })
        let req = NBDRequest(flags: 0, type: NBD.cmdRead, handle: 1, offset: 4096, length: UInt32(cs))
        let (buffers, cost) = NBDReadPlan.reply(to: req, structured: false, segments: segs, data: [chunk0, chunk1],
                                                allocator: ByteBufferAllocator())
        XCTAssertEqual(cost, chunk0.capacity + 4096, "the big slice pins its chunk buffer, the small one is copied")
        XCTAssertEqual(buffers.count, 3, "header, the slice of chunk 0, the copied start of chunk 1")
        let want = Array(chunk0.readableBytesView.dropFirst(4096)) + Array(chunk1.readableBytesView.prefix(4096))
        XCTAssertEqual(Array(bytes(buffers).dropFirst(16)), want)
    }

    func testLongRunsOfZerosAreSentFromTheSharedBuffer() {
        let n = 3 * ReplyWriter.zeros.readableBytes + 5
        let req = NBDRequest(flags: 0, type: NBD.cmdRead, handle: 1, offset: 0, length: UInt32(n))
        let segs: [Segment] = [.zero(offset: 0, length: n)]
        let (buffers, cost) = NBDReadPlan.reply(to: req, structured: false, segments: segs, data: [nil],
                                                allocator: ByteBufferAllocator())
        XCTAssertEqual(bytes(buffers).count, 16 + n)
        XCTAssertTrue(bytes(buffers).dropFirst(16).allSatisfy { $0 == 0 })
        XCTAssertEqual(cost, ReplyWriter.copyLimit)
    }
}
