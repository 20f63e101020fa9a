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
