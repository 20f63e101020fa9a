// ChunkWriterTests: the writer's commit-failure path, in process: a chunk
// whose put cannot be made visible (its subdirectory is a file, so the
// rename fails on a committer thread) fails the run — in `store` or at the
// latest in `makeDurable`, before any map could name it — and leaves no
// temp file and no partial chunk behind: every chunk in the store reads
// back whole.
import Foundation
import XCTest
@testable import ChunkStore

final class ChunkWriterTests: XCTestCase {
    func makeJob() throws -> Job {
        let d = NSTemporaryDirectory() + "/backy-writer-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return try Job.initialize(path: d + "/job",
                                  source: YAMLMap([("filename", .string("/dev/null")), ("type", .string("file"))]))
    }

    /// Block `i` of the test image: 64 KiB, different for every block.
    func block(_ i: Int, into out: UnsafeMutableRawBufferPointer) {
        for k in 0..<out.count { out[k] = UInt8(truncatingIfNeeded: i &* 31 &+ k / 256) }
    }

    func testACommitThatFailsFailsTheRunAndLeavesNoTempFileOrPartialChunk() throws {
        let job = try makeJob()
        let blockSize = 64 << 10, count = 24
        var ids: [ChunkID] = []
        var buf = [UInt8](repeating: 0, count: blockSize)
        for i in 0..<count {
            buf.withUnsafeMutableBytes { block(i, into: $0) }
            ids.append(buf.withUnsafeBytes { ChunkHash.sha256($0) })
        }
        // The 5th block's chunk cannot be renamed into place.
        let root = job.store.chunks.location
        let broken = ids[4].prefix
        try FileManager.default.removeItem(atPath: root + "/" + broken)
        XCTAssertTrue(FileManager.default.createFile(atPath: root + "/" + broken, contents: Data("not a directory".utf8)))

        let session = try job.backend.openSession()
        defer { session.close() }
        let writer = ChunkWriter(job: job, session: session, threads: 2, forceRewrite: false)
        var map = ChunkMap(zeroImageOfSize: UInt64(blockSize * count), chunkSize: blockSize)
        XCTAssertThrowsError(try {
            try writer.store(Array(0..<count), of: &map) { i, ws in
                self.block(i, into: UnsafeMutableRawBufferPointer(rebasing: ws.data[0..<blockSize]))
                return ChunkWriter.Block(length: blockSize)
            }
            try writer.makeDurable()
        }()) { e in
            XCTAssertTrue("\(e)".contains("cannot rename"), "\(e)")
        }
        // A second call reports the same failure, it does not pass.
        XCTAssertThrowsError(try writer.makeDurable())

        let temps = try FileManager.default.contentsOfDirectory(atPath: root + "/" + DirectoryChunks.tempDirName)
        XCTAssertEqual(temps, [], "temp files of abandoned or failed puts were left")
        let stored = try job.store.allChunks()
        XCTAssertFalse(stored.contains(ids[4]))
        let ws = ChunkWorkspace()
        for id in stored {
            XCTAssertTrue(ids.contains(id), id.hex)
            XCTAssertEqual(try job.store.read(id, workspace: ws), blockSize, id.hex)
        }
    }
}
