// ChunkLRUTests: byte-range reads through the chunk cache against an
// in-memory image: every range (across chunk edges, zero chunks, the image's
// end) equals the image's bytes, a chunk is decoded once for many readers,
// the cache stays within its capacity, and a damaged chunk is an error each
// time it is read, never cached.
import ChunkStore
import Foundation
@testable import Mount
import XCTest

/// An image in memory with small chunks; counts chunk reads.
final class TestImage: ImageReader, Sendable {
    let bytes: [UInt8]
    let imageSize: UInt64
    let chunkSize: Int
    let chunkCount: Int
    let zero: Set<Int>
    let damaged: Set<Int>
    let readCount = Locked([Int: Int]())

    init(size: Int, chunkSize: Int, zero: Set<Int> = [], damaged: Set<Int> = [], seed: UInt64) {
        var b = [UInt8](repeating: 0, count: size)
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<size {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            b[i] = UInt8(truncatingIfNeeded: s)
        }
        for c in zero { for i in (c * chunkSize)..<min(size, (c + 1) * chunkSize) { b[i] = 0 } }
        bytes = b
        imageSize = UInt64(size)
        self.chunkSize = chunkSize
        chunkCount = (size + chunkSize - 1) / chunkSize
        self.zero = zero
        self.damaged = damaged
    }

    func isZero(_ i: Int) -> Bool { zero.contains(i) }
    func chunkName(_ i: Int) -> String { "test-\(i)" }

    func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace: ChunkWorkspace) throws -> Int {
        readCount.with { $0[i, default: 0] += 1 }
        if damaged.contains(i) { throw ChunkReadError(name: "test-\(i)", fault: .corrupt("damaged on purpose")) }
        let len = length(of: i)
        bytes.withUnsafeBytes { out.baseAddress!.copyMemory(from: $0.baseAddress! + i * chunkSize, byteCount: len) }
        return len
    }
}

final class ChunkLRUTests: XCTestCase {
    static var seed: UInt64 {
        UInt64(ProcessInfo.processInfo.environment["BACKY_TEST_SEED"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
    }

    func testRandomRangesEqualTheImage() throws {
        let seed = Self.seed
        print("ChunkLRUTests seed \(seed) (BACKY_TEST_SEED)")
        // 10.5 chunks: the last one is short.
        let image = TestImage(size: 10 * 65536 + 32768, chunkSize: 65536, zero: [3, 4], seed: seed)
        let lru = ChunkLRU(image: image, capacity: 3)
        var rng = SeededRNG(seed: seed)
        var buf = [UInt8](repeating: 0xAA, count: 300_000)
        for _ in 0..<2000 {
            let off = UInt64.random(in: 0...(image.imageSize + 100), using: &rng)
            let len = Int.random(in: 1...buf.count, using: &rng)
            let n = try buf.withUnsafeMutableBytes { try lru.read(into: $0.baseAddress!, count: len, at: off) }
            let expect = off >= image.imageSize ? 0 : Int(min(UInt64(len), image.imageSize - off))
            XCTAssertEqual(n, expect, "read of \(len) at \(off)")
            if n > 0 {
                let same = buf.withUnsafeBytes { b in image.bytes.withUnsafeBytes { memcmp(b.baseAddress!, $0.baseAddress! + Int(off), n) } }
                XCTAssertEqual(same, 0, "bytes at \(off)+\(n)")
            }
            XCTAssertLessThanOrEqual(lru.count, 3)
        }
        // Zero chunks are never read from the store.
        XCTAssertNil(image.readCount.get[3])
        XCTAssertNil(image.readCount.get[4])
    }

    func testConcurrentReadersDecodeAChunkOnce() throws {
        let image = TestImage(size: 8 * 65536, chunkSize: 65536, seed: 7)
        let lru = ChunkLRU(image: image, capacity: 16)
        DispatchQueue.concurrentPerform(iterations: 64) { k in
            var b = [UInt8](repeating: 0, count: 4096)
            let off = UInt64((k % 8) * 65536 + 100)
            let n = try! b.withUnsafeMutableBytes { try lru.read(into: $0.baseAddress!, count: 4096, at: off) }
            XCTAssertEqual(n, 4096)
            XCTAssertTrue(b.elementsEqual(image.bytes[Int(off)..<(Int(off) + 4096)]))
        }
        // Each chunk once, plus at most one prefetch of it (already loaded or
        // on its way counts as present, so none is read twice).
        for i in 0..<8 { XCTAssertEqual(image.readCount.get[i], 1, "chunk \(i)") }
    }

    func testDamagedChunkFailsEveryTime() throws {
        let image = TestImage(size: 4 * 65536, chunkSize: 65536, damaged: [2], seed: 3)
        let lru = ChunkLRU(image: image, capacity: 4)
        let errors = Locked(0)
        lru.onError = { _, _ in errors.with { $0 += 1 } }
        var b = [UInt8](repeating: 0, count: 100)
        for _ in 0..<3 {
            XCTAssertThrowsError(try b.withUnsafeMutableBytes { try lru.read(into: $0.baseAddress!, count: 100, at: 2 * 65536 + 5) })
        }
        XCTAssertEqual(image.readCount.get[2], 3)
        XCTAssertEqual(errors.get, 3)
        // Its neighbours read fine.
        let n = try b.withUnsafeMutableBytes { try lru.read(into: $0.baseAddress!, count: 100, at: 65536) }
        XCTAssertEqual(n, 100)
        XCTAssertTrue(b.elementsEqual(image.bytes[65536..<(65536 + 100)]))
    }
}

/// xorshift64*, seeded.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 2685821657736338717
    }
}
