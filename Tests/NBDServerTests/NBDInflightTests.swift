// NBDInflightTests: an NBD connection's in-flight accounting (NBDInflight):
// when decoding must pause, and what the connection table is told — only
// changes of busy/queued, write progress at most every half second.
import XCTest
@testable import NBDServer

final class NBDInflightTests: XCTestCase {
    func testFullAtEitherLimitOrWhileWaitingForBudget() {
        var f = NBDInflight()
        XCTAssertFalse(f.full(maxRequests: 2, maxBytes: 100))
        f.requests = 2
        XCTAssertTrue(f.full(maxRequests: 2, maxBytes: 100))
        f.requests = 1
        f.bytes = 100
        XCTAssertTrue(f.full(maxRequests: 2, maxBytes: 100))
        f.bytes = 99
        XCTAssertFalse(f.full(maxRequests: 2, maxBytes: 100))
        f.waitingForBudget = true
        XCTAssertTrue(f.full(maxRequests: 2, maxBytes: 100))
    }

    func testReportsChangesAndWriteProgressAtMostTwiceASecond() {
        var f = NBDInflight()
        XCTAssertNil(f.report(wrote: false, now: 10), "nothing changed")
        f.requests = 1
        XCTAssertEqual(f.report(wrote: false, now: 10), .init(busy: true, queued: false, wrote: false, activity: true))
        XCTAssertNil(f.report(wrote: false, now: 10))
        f.queuedReplies = 1
        XCTAssertEqual(f.report(wrote: false, now: 10), .init(busy: true, queued: true, wrote: false, activity: false))
        XCTAssertEqual(f.report(wrote: true, now: 10.1), .init(busy: true, queued: true, wrote: true, activity: false))
        XCTAssertNil(f.report(wrote: true, now: 10.5), "progress again within half a second")
        XCTAssertEqual(f.report(wrote: true, now: 10.7)?.wrote, true)
        f.requests = 0
        f.queuedReplies = 0
        XCTAssertEqual(f.report(wrote: true, now: 10.8), .init(busy: false, queued: false, wrote: false, activity: true))
    }
}
