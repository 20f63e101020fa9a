// FastHashTests: XXH64 (FastHash) against python xxhash's vectors,
// streaming against one-shot, and the chunk digester (SHA-256 and XXH64
// slice by slice) against one-shot hashes.
import XCTest
@testable import ChunkStore

final class FastHashTests: XCTestCase {
    func testXXH64Vectors() {
        // Values from the reference implementation (python xxhash, seed 0).
        func h(_ b: [UInt8]) -> String { String(b.withUnsafeBytes { FastHash.xxh64($0) }, radix: 16) }
        XCTAssertEqual(h([]), "ef46db3751d8e999")
        XCTAssertEqual(h(Array("a".utf8)), "d24ec4f1a98c6e5b")
        XCTAssertEqual(h(Array("abc".utf8)), "44bc2cf5ad770999")
        XCTAssertEqual(h([UInt8](repeating: UInt8(ascii: "x"), count: 31)), "60dd0d01083b99f0")
        XCTAssertEqual(h([UInt8](repeating: UInt8(ascii: "y"), count: 32)), "64da1f1d3495ce66")
        XCTAssertEqual(h([UInt8](repeating: UInt8(ascii: "z"), count: 33)), "c5241253c64e0268")
        let seq = (0..<100).flatMap { _ in (0..<256).map { UInt8($0) } }
        XCTAssertEqual(h(seq), "6d29c9cb411e12")
    }

    /// Any split of the input into updates gives the one-shot value.
    func testStreamingEqualsOneShot() {
        var r: UInt64 = 7
        let bytes = (0..<70_000).map { _ -> UInt8 in r ^= r << 13; r ^= r >> 7; r ^= r << 17; return UInt8(truncatingIfNeeded: r) }
        bytes.withUnsafeBytes { all in
            for len in [0, 1, 5, 31, 32, 33, 64, 100, 4096, 70_000] {
                let whole = FastHash.xxh64(UnsafeRawBufferPointer(rebasing: all[0..<len]))
                for step in [1, 3, 7, 31, 32, 33, 64, 1000, 65_536] {
                    var s = FastHash.Stream()
                    var i = 0
                    while i < len {
                        let n = min(step + (i % 5), len - i)
                        s.update(UnsafeRawBufferPointer(rebasing: all[i..<(i + n)]))
                        i += n
                    }
                    XCTAssertEqual(s.finish(), whole, "length \(len), steps of about \(step)")
                }
            }
        }
    }

    /// The slice-by-slice digest of a chunk equals the one-shot id and
    /// XXH64, whether it starts with zeros, is all zeros or has none.
    func testChunkDigesterMatchesOneShot() {
        var r: UInt64 = 11
        var chunk = (0..<(1 << 20)).map { _ -> UInt8 in r ^= r << 13; r ^= r >> 7; r ^= r << 17; return UInt8(truncatingIfNeeded: r) }
        for zeroHead in [0, 300_000, 1 << 20] {
            for i in 0..<zeroHead { chunk[i] = 0 }
            chunk.withUnsafeBytes { all in
                var d = ChunkDigester()
                var i = 0
                while i < all.count {
                    let n = min(262_144, all.count - i)
                    d.update(UnsafeRawBufferPointer(rebasing: all[i..<(i + n)]))
                    i += n
                }
                let got = d.finish()
                XCTAssertEqual(got.id, ChunkHash.id(of: all))
                if zeroHead == 1 << 20 {
                    XCTAssertTrue(got.id.isZero)
                } else {
                    XCTAssertEqual(got.fast, FastHash.xxh64(all))
                }
            }
        }
    }
}
