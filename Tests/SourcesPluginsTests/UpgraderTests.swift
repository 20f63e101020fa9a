// UpgraderTests: upgrade's verification reads the old revision a second
// time and compares it with the new map.
import ChunkStore
import Foundation
import XCTest
@testable import SourcesPlugins

final class UpgraderTests: XCTestCase {
    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "/backy-upgrade-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    /// A source read twice by upgrade: a chunk that was zero at the first
    /// read must still be zero at the second (it is no longer skipped).
    func testUpgradeRereadsChunksThatWereZero() throws {
        final class Changing: ImageReader, Sendable {
            let imageSize: UInt64 = 8 << 20
            let chunkSize = 4 << 20
            var chunkCount: Int { 2 }
            let reads = Locked([0, 0])
            func isZero(_ i: Int) -> Bool { false }
            func chunkName(_ i: Int) -> String { "chunk \(i)" }
            func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace: ChunkWorkspace) throws -> Int {
                let n = reads.with { r -> Int in r[i] += 1; return r[i] }
                // Chunk 0 is data; chunk 1 is zeros at the first read only.
                let byte: UInt8 = i == 0 ? 7 : (n == 1 ? 0 : 9)
                out.baseAddress!.initializeMemory(as: UInt8.self, repeating: byte, count: chunkSize)
                return chunkSize
            }
        }
        let d = tempDir()
        let job = try Job.initialize(path: d + "/job", source: YAMLMap([("filename", .string("/dev/null")), ("type", .string("file"))]))
        let session = try PinSession(jobPath: job.path)
        defer { session.close() }
        let image = Changing()
        var map = ChunkMap(zeroImageOfSize: image.imageSize)
        let writer = ChunkWriter(job: job, session: session, threads: 2, forceRewrite: false)
        try writer.store([0, 1], of: &map) { i, ws in ChunkWriter.Block(length: try image.read(i, into: ws.data, workspace: ws)) }
        try writer.makeDurable()
        XCTAssertTrue(map.chunks[1].isZero)
        XCTAssertThrowsError(try Upgrader(job: job).verify(image: image, map: map, writer: writer)) {
            XCTAssertTrue("\($0)".contains("chunk 1"), "\($0)")
        }
    }
}
