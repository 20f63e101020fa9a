// LegacyCodecTests: backy 2.4's codecs: MurmurHash3 chunk names and LZO
// frames, against values backy 2.4 produced.
import XCTest
@testable import ChunkStore

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
