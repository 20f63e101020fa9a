// PurgerTests: references and purge in process, on a job made by a real
// backup of a file: purge removes exactly the chunks no map and no live
// session names; a session's pins and its pinned map keep chunks until it
// closes (even when the revision is removed meanwhile); a complete
// revision whose map is gone stops purge before it removes anything.
import ChunkStore
import Foundation
import Logging
import XCTest
@testable import SourcesPlugins

final class PurgerTests: XCTestCase {
    var dir = ""
    let log = Logger(label: "test")

    override func setUp() {
        dir = NSTemporaryDirectory() + "/backy-purge-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A job with one revision of a 3-chunk image (every chunk different).
    func backedUpJob() throws -> (Job, Revision, [ChunkID]) {
        let img = dir + "/img"
        var bytes = [UInt8](repeating: 0, count: 2 * ChunkWorkspace.chunkSize + 4096)
        // Period 251 × 512 bytes: no two chunks alike.
        for i in stride(from: 0, to: bytes.count, by: 512) { bytes[i] = UInt8(i / 512 % 251 + 1) }
        XCTAssertTrue(FileManager.default.createFile(atPath: img, contents: Data(bytes)))
        let job = try Job.initialize(path: dir + "/job",
                                     source: YAMLMap([("filename", .string(img)), ("type", .string("file"))]))
        let r = try BackupRun.run(job: job, tags: ["daily"], log: log)
        let chunks = try job.loadMap(r.revision).chunks
        XCTAssertEqual(Set(chunks).count, 3)
        return (job, r.revision, chunks)
    }

    /// Stores a chunk that no map names.
    func storeStray(_ job: Job, _ fill: UInt8) throws -> ChunkID {
        let bytes = [UInt8](repeating: fill, count: 8192)
        let id = bytes.withUnsafeBytes { ChunkHash.sha256($0) }
        try bytes.withUnsafeBytes { _ = try job.store.write(id, data: $0, workspace: ChunkWorkspace(), tag: "test") }
        return id
    }

    func purge(_ job: Job) throws -> Purger.Result { try Purger(job: job, log: log, batchSize: 2).run() }

    func testPurgeRemovesOnlyWhatNothingNames() throws {
        let (job, _, chunks) = try backedUpJob()
        let stray = try storeStray(job, 1)
        let pinned = try storeStray(job, 2)
        let session = try job.backend.openSession()
        XCTAssertTrue(try session.pinThenTest(pinned, in: job.store.chunks, gate: job.backend.makeGate()))

        let r = try purge(job)
        XCTAssertEqual(r.removedChunks, 1)
        XCTAssertEqual(r.keptChunks, 4)
        XCTAssertFalse(job.store.exists(stray))
        XCTAssertTrue(job.store.exists(pinned))
        for c in chunks { XCTAssertTrue(job.store.exists(c), c.hex) }

        session.close()
        XCTAssertEqual(try purge(job).removedChunks, 1)
        XCTAssertFalse(job.store.exists(pinned))
        XCTAssertEqual(Set(try job.store.allChunks()), Set(chunks))
    }

    func testAPinnedMapKeepsARemovedRevisionsChunksUntilTheSessionCloses() throws {
        let (job, rev, chunks) = try backedUpJob()
        let session = try job.backend.openSession()
        _ = try session.pinMap(.map(rev.id), revision: rev.id)
        try job.removeRevision(rev.id)
        XCTAssertEqual(try job.scan().count, 0)
        XCTAssertEqual(try References(job: job).refresh().native, Set(chunks))
        XCTAssertEqual(try purge(job).removedChunks, 0)
        for c in chunks { XCTAssertTrue(job.store.exists(c), c.hex) }
        session.close()
        XCTAssertEqual(try purge(job).removedChunks, 3)
        XCTAssertEqual(try job.store.allChunks(), [])
    }

    func testACompleteRevisionWithoutItsMapStopsPurge() throws {
        let (job, rev, chunks) = try backedUpJob()
        _ = try storeStray(job, 3)
        try FileManager.default.removeItem(atPath: job.backend.location(of: .map(rev.id)))
        XCTAssertThrowsError(try References(job: job).refresh())
        XCTAssertThrowsError(try purge(job)) { e in
            XCTAssertTrue("\(e)".contains("revision \(rev.id) has no readable map"), "\(e)")
        }
        XCTAssertEqual(try job.store.allChunks().count, 4, "nothing was removed")
        for c in chunks { XCTAssertTrue(job.store.exists(c), c.hex) }
    }
}
