// ReplyBudgetTests: who gets the server's reply budget when it is short
// (ReplyBudget): connections that read their replies go before a queue of
// connections that do not, non-readers together hold at most half of it and
// are served oldest and newest in turn, a release wakes the one whose turn
// it is, and nothing is lost when a connection leaves.
import Foundation
import XCTest
@testable import NBDServer

final class ReplyBudgetTests: XCTestCase {
    /// Records which connections were woken.
    // @unchecked Sendable: `ids` is read and changed only under `lock`.
    final class Wakes: @unchecked Sendable {
        private let lock = NSLock()
        private var ids: [Int] = []
        func wake(_ id: Int) -> @Sendable () -> Void { { self.lock.lock(); self.ids.append(id); self.lock.unlock() } }
        /// The wakes so far (waits briefly for ones sent to another thread).
        func take() -> [Int] {
            Thread.sleep(forTimeInterval: 0.05)
            lock.lock(); defer { lock.unlock() }
            let r = ids
            ids = []
            return r
        }
    }

    func testAReaderIsServedBeforeAQueueOfClientsThatDoNotRead() {
        let b = ReplyBudget(limit: 8)
        let w = Wakes()
        // Two stalled clients: the first takes the non-readers' half, the
        // second waits.
        XCTAssertTrue(b.take(1, 4, wake: w.wake(1)))
        XCTAssertFalse(b.take(2, 4, wake: w.wake(2)))
        XCTAssertFalse(b.take(3, 4, wake: w.wake(3)))
        // A client that has just had a reply written goes past them.
        b.reads(9)
        XCTAssertTrue(b.take(9, 4, wake: w.wake(9)))
        XCTAssertEqual(b.held, 8)
        // The budget is full: the reader waits, and is woken first when
        // anything is released.
        XCTAssertFalse(b.take(9, 2, wake: w.wake(9)))
        _ = w.take()
        b.adjust(1, -4)
        XCTAssertEqual(w.take(), [9])
        XCTAssertTrue(b.take(9, 2, wake: w.wake(9)))
        XCTAssertEqual(b.held, 6)
        // What is left goes to the non-readers, oldest and newest in turn
        // (connection 1 was served the oldest's turn).
        XCTAssertEqual(w.take(), [2])
        XCTAssertTrue(b.take(2, 2, wake: w.wake(2)))
        XCTAssertFalse(b.take(3, 4, wake: w.wake(3)), "the budget is full")
        b.leave(2, holding: 2)
        XCTAssertEqual(w.take(), [3])
        XCTAssertTrue(b.take(3, 2, wake: w.wake(3)))
        XCTAssertEqual(b.held, 8)
    }

    func testNonReadersHoldAtMostHalfAndNewestAndOldestTakeTurns() {
        let b = ReplyBudget(limit: 8)
        let w = Wakes()
        XCTAssertTrue(b.take(1, 4, wake: w.wake(1)))
        for id in 2...5 { XCTAssertFalse(b.take(id, 1, wake: w.wake(id)), "connection \(id)") }
        XCTAssertEqual(b.held, 4, "non-readers hold at most half the budget")
        // Each release lets one more in: oldest, newest, oldest, newest (connection
        // 1 had the newest's turn).
        var order: [Int] = []
        for _ in 0..<4 {
            b.adjust(1, -1)
            let woken = w.take()
            XCTAssertEqual(woken.count, 1, "\(woken)")
            guard let id = woken.first else { break }
            XCTAssertTrue(b.take(id, 1, wake: w.wake(id)))
            order.append(id)
        }
        XCTAssertEqual(order, [2, 5, 3, 4])
        XCTAssertEqual(b.held, 4)
        // A request larger than the budget still goes through when nothing is held.
        for id in 1...5 { b.leave(id, holding: id == 1 ? 0 : 1) }
        XCTAssertEqual(b.held, 0)
        XCTAssertTrue(b.take(7, 100, wake: w.wake(7)))
        XCTAssertEqual(b.highWater, 100)
    }

    func testPressureIsSomeoneElseWaitingForHalfASecond() {
        let b = ReplyBudget(limit: 4)
        XCTAssertTrue(b.take(1, 4) {})
        XCTAssertFalse(b.take(2, 1) {})
        XCTAssertFalse(b.underPressure(besides: 1))
        Thread.sleep(forTimeInterval: 0.6)
        XCTAssertTrue(b.underPressure(besides: 1))
        XCTAssertFalse(b.underPressure(besides: 2))
    }
}
