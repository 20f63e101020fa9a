// BlockStatusTests: block status extents of a revision (BlockStatus): zero
// chunks merge into holes, REQ_ONE stops at the first extent.
import ChunkStore
import Foundation
import NBDServer
import NIOCore
import XCTest

final class BlockStatusTests: XCTestCase {
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
}
