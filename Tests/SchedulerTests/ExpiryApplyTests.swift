// ExpiryApplyTests.swift — expiry (backy 2.4's `Schedule.expire`) applied to a real job directory:
// tags are taken off and `.rev` files rewritten, tag-less revisions removed,
// ad-hoc tags survive, and nothing happens while a backup holds `.backup`.
// Also the history cache the daemon uses for the status file and `jobs`.

import ChunkStore
import Foundation
import XCTest

@testable import Scheduler

final class SchedulerExpiryApplyTests: XCTestCase {
    var dir = ""
    let now = Timestamp.date(year: 2014, month: 5, day: 10, hour: 10)
    let daily = try! Schedule(["daily": ScheduleTag(interval: 86400, keep: 3)])

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "backy-expiry-\(UUID().uuidString)"
        try Job.initialize(path: dir, source: YAMLMap([("filename", .string("/dev/null")), ("type", .string("file"))]))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    @discardableResult
    func add(daysAgo: Double, _ tags: Set<String>, complete: Bool = true) throws -> String {
        let job = try Job(path: dir)
        var stats = YAMLMap([("bytes_written", .int(0))])
        if complete { stats["duration"] = .double(1.5) }
        let rev = Revision(id: RevisionID.make(), timestamp: now.addingTimeInterval(-daysAgo * 86400), parent: nil,
                           tags: tags, stats: stats)
        try job.save(rev)
        return rev.id
    }

    func tags(_ id: String) throws -> Set<String>? {
        try Job(path: dir).scan().first { $0.id == id }?.tags
    }

    func testExpiryRewritesTagsRemovesTaglessAndKeepsAdHocTags() throws {
        let old = try add(daysAgo: 10, ["daily"])
        let oldAdHoc = try add(daysAgo: 9, ["daily", "manual"])
        let keptByInterval = try add(daysAgo: 2.5, ["daily"])
        let recent = try (0..<3).map { try add(daysAgo: Double($0) * 0.5, ["daily"]) }
        let incomplete = try add(daysAgo: 20, ["daily"], complete: false)

        let out = try Expiry.run(jobPath: dir, jobName: "j", schedule: daily, now: now)
        XCTAssertEqual(out?.removed, [old])
        XCTAssertEqual(out?.lostTags, [old: ["daily"], oldAdHoc: ["daily"]])
        XCTAssertNil(try tags(old), "tag-less revision removed with its files")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/\(old).rev"))
        XCTAssertEqual(try tags(oldAdHoc), ["manual"], "an ad-hoc tag never expires")
        XCTAssertEqual(try tags(keptByInterval), ["daily"], "younger than keep × interval")
        for id in recent { XCTAssertEqual(try tags(id), ["daily"]) }
        XCTAssertEqual(try tags(incomplete), ["daily"], "incomplete revisions are left to the next backup")

        // Idempotent.
        XCTAssertEqual(try Expiry.run(jobPath: dir, jobName: "j", schedule: daily, now: now), Expiry.Outcome())
    }

    func testSkippedWhileABackupHoldsTheLock() throws {
        let old = try add(daysAgo: 10, ["daily"])
        for d in 0..<3 { try add(daysAgo: Double(d) * 0.1, ["daily"]) }
        let backup = FileLock(path: dir + "/.backup")
        XCTAssertTrue(try backup.tryLock(.exclusive))
        // flock locks belong to the open file: a second open in this process conflicts too.
        XCTAssertNil(try Expiry.run(jobPath: dir, jobName: "j", schedule: daily, now: now))
        XCTAssertEqual(try tags(old), ["daily"])
        backup.unlock()
        XCTAssertEqual(try Expiry.run(jobPath: dir, jobName: "j", schedule: daily, now: now)?.removed, [old])
    }

    func testHistoryCacheSeesNewRevisions() throws {
        let cache = HistoryCache()
        XCTAssertNil(cache.history(jobPath: dir).last)
        let a = try add(daysAgo: 1, ["daily"])
        XCTAssertEqual(cache.history(jobPath: dir).last?.id, a)
        let b = try add(daysAgo: 0.5, ["daily", "weekly"])
        try add(daysAgo: 0.1, ["daily"], complete: false)
        let h = cache.history(jobPath: dir)
        XCTAssertEqual(h.last?.id, b, "newest complete revision")
        XCTAssertEqual(h.last?.tags, ["daily", "weekly"])
        XCTAssertEqual(h.last?.duration, 1.5)
        XCTAssertEqual(h.revisions.count, 3)
        XCTAssertEqual(cache.history(jobPath: dir + "/missing").revisions.count, 0)
    }
}
