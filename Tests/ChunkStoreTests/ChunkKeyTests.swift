// ChunkKeyTests: the keys image readers give their chunks (ChunkKey), which
// the NBD chunk cache and Mount's chunk cache use as they are: equal only
// for the same bytes. Native chunks are shared across revisions by
// SHA-256; backy 2.4 chunks by MurmurHash3 and the length the image uses;
// an image without chunk names keys by itself, so two such images never
// share an entry and a key keeps its image alive.
import Foundation
import XCTest
@testable import ChunkStore

final class ChunkKeyTests: XCTestCase {
    /// An image that names no chunks (like a raw backy 2.x image).
    final class Unnamed: ImageReader, Sendable {
        let imageSize: UInt64 = 3 * 4096 + 100
        let chunkSize = 4096
        var chunkCount: Int { 4 }
        func isZero(_ i: Int) -> Bool { false }
        func chunkName(_ i: Int) -> String { "\(i)" }
        func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace: ChunkWorkspace) throws -> Int { 0 }
    }

    func id(_ byte: UInt8) -> ChunkID { ChunkID(hex: String(repeating: String(format: "%02x", byte), count: 32))! }

    func testNativeChunksAreKeyedByContentAcrossRevisions() throws {
        let store = ChunkStore(chunks: DirectoryChunks(root: "/nonexistent"))
        let a = NativeImage(map: ChunkMap(imageSize: 3 << 22, chunks: [id(1), id(2), .zero]), store: store)
        let b = NativeImage(map: ChunkMap(imageSize: 2 << 22, chunks: [id(2), id(3)]), store: store)
        XCTAssertEqual(a.chunkKey(1), b.chunkKey(0), "the same chunk in two revisions")
        XCTAssertNotEqual(a.chunkKey(0), b.chunkKey(0))
        XCTAssertEqual(a.chunkKey(1), .sha256(id(2)))
        XCTAssertEqual(a.chunkKey(1).stored, .native(id(2)))
        XCTAssertNil(a.chunkKey(2).stored, "a zero chunk has no stored chunk")
    }

    func testBacky24ChunksAreKeyedByHashAndUsedLength() throws {
        let store = ChunkStore(chunks: DirectoryChunks(root: "/nonexistent"))
        let h = String(repeating: "ab", count: 16)
        func image(_ size: Int) throws -> LegacyImage {
            let json = "{\"size\": \(size), \"mapping\": {\"0\": \"\(h)\"}}"
            return LegacyImage(map: try LegacyMap.parse(Array(json.utf8), path: "test"), store: store)
        }
        let full = try image(LegacyMap.chunkSize), shrunk = try image(1000), same = try image(LegacyMap.chunkSize)
        XCTAssertEqual(full.chunkKey(0), .mmh3(h, length: LegacyMap.chunkSize))
        XCTAssertEqual(full.chunkKey(0), same.chunkKey(0))
        XCTAssertNotEqual(full.chunkKey(0), shrunk.chunkKey(0), "a shrunk image uses fewer of the chunk's bytes")
        XCTAssertEqual(full.chunkKey(0).stored, .legacy(h))
        // A chunk the map has no entry for is the image's own.
        let big = try image(2 * LegacyMap.chunkSize)
        XCTAssertEqual(big.chunkKey(1), .unmapped(ImageIdentity(big), index: 1))
        XCTAssertNotEqual(big.chunkKey(1), try image(2 * LegacyMap.chunkSize).chunkKey(1))
    }

    func testImagesWithoutChunkNamesNeverShareKeys() {
        let a = Unnamed(), b = Unnamed()
        XCTAssertEqual(a.chunkKey(3), a.chunkKey(3))
        XCTAssertNotEqual(a.chunkKey(3), b.chunkKey(3))
        XCTAssertEqual(a.chunkKey(3), .bytes(ImageIdentity(a), offset: 3 * 4096, length: 100))
        XCTAssertNil(a.chunkKey(0).stored)
        // A key holds its image: its identity cannot be reused while the
        // key (in a cache) still names it.
        weak var gone: Unnamed?
        var key: ChunkKey?
        do {
            let c = Unnamed()
            gone = c
            key = c.chunkKey(0)
        }
        XCTAssertNotNil(gone)
        key = nil
        XCTAssertNil(key)
        XCTAssertNil(gone)
    }
}
