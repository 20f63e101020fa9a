// ChunkIDTests: chunk ids, hashing and zero detection.
import XCTest
@testable import ChunkStore

final class ChunkIDTests: XCTestCase {
    func testHexRoundTrip() {
        let hex = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210"
        let id = ChunkID(hex: hex)!
        XCTAssertEqual(id.hex, hex)
        XCTAssertEqual(id.prefix, "00")
        XCTAssertEqual(ChunkID(bytes: id.bytes), id)
        XCTAssertNil(ChunkID(hex: "zz" + hex.dropFirst(2)))
        XCTAssertNil(ChunkID(hex: String(hex.dropFirst())))
        XCTAssertEqual(ChunkID(hex: hex.uppercased()), id)
    }

    func testSHA256Vectors() {
        // SHA-256("abc") from FIPS 180-2.
        let abc = Array("abc".utf8)
        let id = abc.withUnsafeBytes { ChunkHash.sha256($0) }
        XCTAssertEqual(id.hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(id.prefix, "ba")
        // 4 MiB of spaces.
        let spaces = [UInt8](repeating: 0x20, count: 4 << 20)
        let sid = spaces.withUnsafeBytes { ChunkHash.id(of: $0) }
        XCTAssertEqual(sid.hex, "b7a6434d497ad38396f731f01623496e52cefa88063bcb80cb802c2827c31f8a")
    }

    func testZeroDetection() {
        var buf = [UInt8](repeating: 0, count: 4 << 20)
        XCTAssertTrue(buf.withUnsafeBytes { ChunkHash.isAllZero($0) })
        XCTAssertEqual(buf.withUnsafeBytes { ChunkHash.id(of: $0) }, .zero)
        for pos in [0, 1, 63, 64, 4095, 2 << 20, (4 << 20) - 9, (4 << 20) - 1] {
            buf[pos] = 1
            XCTAssertFalse(buf.withUnsafeBytes { ChunkHash.isAllZero($0) }, "byte \(pos)")
            XCTAssertNotEqual(buf.withUnsafeBytes { ChunkHash.id(of: $0) }, .zero)
            buf[pos] = 0
        }
        XCTAssertTrue([UInt8]().withUnsafeBytes { ChunkHash.isAllZero($0) })
        XCTAssertTrue([UInt8](repeating: 0, count: 7).withUnsafeBytes { ChunkHash.isAllZero($0) })
        XCTAssertFalse([UInt8]([0, 0, 0, 5]).withUnsafeBytes { ChunkHash.isAllZero($0) })
    }

    func testOrderingMatchesHex() {
        let ids = (0..<50).map { i -> ChunkID in
            let b = Array("chunk \(i)".utf8)
            return b.withUnsafeBytes { ChunkHash.sha256($0) }
        }
        XCTAssertEqual(ids.sorted().map(\.hex), ids.map(\.hex).sorted())
    }
}

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

final class LegacyCodecTests: XCTestCase {
    func testMurmurHash3VectorsOfBacky24() {
        func h(_ b: [UInt8]) -> String { b.withUnsafeBytes { MurmurHash3.hex($0) } }
        XCTAssertEqual(h([UInt8](repeating: 0x20, count: 4 << 20)), "c01b5d75bfe6a1fa5bca6e492c5ab09a")
        XCTAssertEqual(h([UInt8](repeating: 0, count: 4 << 20)), "c72b4ba82d1f51b71c8a18195ad33fc8")
        XCTAssertEqual(h(Array("asdf".utf8)), "0881b420eb9c3610cc23d53a7f58cbda")
        XCTAssertEqual(h(Array("volume contents\n".utf8)), "d38a916222639c43cbbef8627c416516")
        XCTAssertEqual(h([]), String(repeating: "0", count: 32))
    }

    func testLZOFrameOfAsdf() throws {
        let frame: [UInt8] = [0xf0, 0x00, 0x00, 0x00, 0x04, 0x15, 0x61, 0x73, 0x64, 0x66, 0x11, 0x00, 0x00]
        var out = [UInt8](repeating: 0, count: 16)
        let n = try frame.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try LZO.decompress(src, into: $0) } }
        XCTAssertEqual(Array(out[0..<n]), Array("asdf".utf8))
        var bad = frame; bad[0] = 0xf2
        XCTAssertThrowsError(try bad.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try LZO.decompress(src, into: $0) } })
        bad = frame; bad[4] = 5
        XCTAssertThrowsError(try bad.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try LZO.decompress(src, into: $0) } })
        bad = Array(frame.dropLast(3))
        XCTAssertThrowsError(try bad.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try LZO.decompress(src, into: $0) } })
    }
}
