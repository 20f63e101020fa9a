// ChunkCacheTests: the NBD server's chunk cache (ChunkCache): a chunk is
// loaded once for concurrent gets and the cache stays within its capacity.
import ChunkStore
import Foundation
import NBDServer
import NIOCore
import XCTest

final class ChunkCacheTests: XCTestCase {
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
