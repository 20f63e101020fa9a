// PinSessionTests: the contract between sessions and purge, in process: a
// purge batch (References.refresh under the exclusive gate) never misses a
// session's pins while that session ends, and a dead session's pins are
// cleaned while a live one's stay.
import Foundation
import XCTest
@testable import ChunkStore

final class PinSessionTests: XCTestCase {
    func makeJob() throws -> Job {
        let d = NSTemporaryDirectory() + "/backy-pins-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return try Job.initialize(path: d + "/job",
                                  source: YAMLMap([("filename", .string("/dev/null")), ("type", .string("file"))]))
    }

    /// A backup writes its map and then closes its session. If the session's
    /// pin file could vanish between purge's directory listing (which did
    /// not see the map yet) and its reading of the pins, the chunk would be
    /// named by neither. Closing waits for the batch instead.
    func testPinsDoNotVanishDuringAPurgeBatch() throws {
        let job = try makeJob()
        let chunk = ChunkID(hex: String(repeating: "ab", count: 32))!
        let session = try PinSession(jobPath: job.path)
        try Gate(jobPath: job.path).shared { try session.pin(chunk) }

        let refs = References(job: job)
        let closed = DispatchSemaphore(value: 0)
        refs.afterListing = {
            // The session ends in the middle of the batch.
            Thread { session.close(); closed.signal() }.start()
            // Long enough for an unguarded close to finish.
            _ = closed.wait(timeout: .now() + 0.5)
        }
        let seen = try Gate(jobPath: job.path).exclusive { try refs.refresh() }
        XCTAssertTrue(seen.native.contains(chunk), "the ending session's pin was missed by the purge batch")
        // Once the batch is over the session finishes closing.
        XCTAssertEqual(closed.wait(timeout: .now() + 10), .success)
        XCTAssertFalse(FileManager.default.fileExists(atPath: session.pinPath))
        refs.afterListing = nil
        XCTAssertFalse(try refs.refresh().native.contains(chunk))
    }

    /// A closed session's pins are gone at once; a live one's stay through
    /// cleanDead.
    func testCleanDeadKeepsLiveSessions() throws {
        let job = try makeJob()
        let live = try PinSession(jobPath: job.path)
        let ended = try PinSession(jobPath: job.path)
        let a = ChunkID(hex: String(repeating: "01", count: 32))!
        let b = ChunkID(hex: String(repeating: "02", count: 32))!
        try Gate(jobPath: job.path).shared { try live.pin(a); try ended.pin(b) }
        ended.close()
        let cleanup = try PinSession.cleanDead(jobPath: job.path, store: job.store)
        XCTAssertEqual(cleanup.sessions, 0, "a live session's pin file is locked and must not count as dead")
        let seen = try References(job: job).refresh()
        XCTAssertEqual(seen.native, [a])
        live.close()
    }
}
