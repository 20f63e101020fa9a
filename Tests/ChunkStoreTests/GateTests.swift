// GateTests: the gate between sessions and purge (Gate, StoreSession's
// pinThenTest), in process with threads: an exclusive holder (a purge
// batch) keeps shared holders (sessions pinning) out and the other way
// round, shared holders run together, and a pin-then-test made while a
// batch runs returns only after the batch, with the store's answer.
import Foundation
import XCTest
@testable import ChunkStore

final class GateTests: XCTestCase {
    func makeJob() throws -> Job {
        let d = NSTemporaryDirectory() + "/backy-gate-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return try Job.initialize(path: d + "/job",
                                  source: YAMLMap([("filename", .string("/dev/null")), ("type", .string("file"))]))
    }

    /// Holds `gate` (`exclusive` or shared) on a thread of its own until
    /// `release` is signalled; `held` is signalled once it holds it.
    func hold(_ job: Job, exclusive: Bool, held: DispatchSemaphore, release: DispatchSemaphore) {
        Thread {
            let gate = job.backend.makeGate()
            let body = { held.signal(); release.wait() }
            if exclusive { try! gate.exclusive(body) } else { try! gate.shared(body) }
        }.start()
    }

    /// Runs `body` under the gate on another thread; returns a semaphore
    /// signalled once `body` ran.
    func enter(_ job: Job, exclusive: Bool, _ body: @escaping @Sendable () -> Void = {}) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        Thread {
            let gate = job.backend.makeGate()
            if exclusive { try! gate.exclusive(body) } else { try! gate.shared(body) }
            done.signal()
        }.start()
        return done
    }

    func testExclusiveAndSharedExcludeEachOther() throws {
        let job = try makeJob()
        for firstExclusive in [true, false] {
            let held = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
            hold(job, exclusive: firstExclusive, held: held, release: release)
            XCTAssertEqual(held.wait(timeout: .now() + 10), .success)
            let entered = enter(job, exclusive: !firstExclusive)
            XCTAssertEqual(entered.wait(timeout: .now() + 0.5), .timedOut,
                           "\(firstExclusive ? "shared" : "exclusive") entered while the gate was held \(firstExclusive ? "exclusively" : "shared")")
            release.signal()
            XCTAssertEqual(entered.wait(timeout: .now() + 10), .success)
        }
    }

    func testSharedHoldersRunTogether() throws {
        let job = try makeJob()
        let held = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        hold(job, exclusive: false, held: held, release: release)
        XCTAssertEqual(held.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(enter(job, exclusive: false).wait(timeout: .now() + 10), .success,
                       "a second shared holder waited for the first")
        release.signal()
    }

    func testPinThenTestWaitsForAPurgeBatchAndAnswersAfterIt() throws {
        let job = try makeJob()
        let ws = ChunkWorkspace()
        let bytes = [UInt8](repeating: 7, count: 4096)
        let stored = bytes.withUnsafeBytes { ChunkHash.sha256($0) }
        try bytes.withUnsafeBytes { _ = try job.store.write(stored, data: $0, workspace: ws, tag: "test") }
        let absent = ChunkID(hex: String(repeating: "5a", count: 32))!
        let session = try job.backend.openSession()
        defer { session.close() }

        let held = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        hold(job, exclusive: true, held: held, release: release)
        XCTAssertEqual(held.wait(timeout: .now() + 10), .success)
        let answers = Locked<[Bool]>([])
        let done = DispatchSemaphore(value: 0)
        Thread {
            let gate = job.backend.makeGate()
            for id in [stored, absent] {
                let there = try! session.pinThenTest(id, in: job.store.chunks, gate: gate)
                answers.with { $0.append(there) }
            }
            done.signal()
        }.start()
        XCTAssertEqual(done.wait(timeout: .now() + 0.5), .timedOut, "pinned and tested inside a purge batch")
        XCTAssertEqual(answers.get, [])
        // The batch sees no pin yet: the session had not pinned.
        XCTAssertFalse(try References(job: job).refresh().native.contains(stored))
        release.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(answers.get, [true, false])
        XCTAssertEqual(try References(job: job).refresh().native, [stored, absent])
    }
}
