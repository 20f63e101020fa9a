// ReadProgressTests: when a connection counts as a reader (ReadProgress):
// each further 256 KiB its client acknowledged marks it, a count that grows
// by less asks for another look, a count that stands still (a client that
// does not read) never marks it, and a socket without TCP_INFO falls back
// to written replies.
import XCTest
@testable import NBDServer

final class ReadProgressTests: XCTestCase {
    func testEachStepAcknowledgedMarksAReader() {
        var p = ReadProgress()
        let step = ReadProgress.step
        XCTAssertEqual(step, 256 << 10)
        XCTAssertTrue(p.sampled(acked: 0) == (false, false), "nothing acknowledged")
        XCTAssertTrue(p.sampled(acked: 100_000) == (false, true), "grew, not a step yet: look again")
        XCTAssertTrue(p.sampled(acked: step) == (true, false))
        XCTAssertTrue(p.sampled(acked: step + 1) == (false, true))
        XCTAssertTrue(p.sampled(acked: 2 * step - 1) == (false, true))
        XCTAssertTrue(p.sampled(acked: 2 * step) == (true, false))
        XCTAssertFalse(p.unsupported)
    }

    func testAClientThatStopsReadingIsNeverMarked() {
        var p = ReadProgress()
        // A receive buffer's worth, then nothing more.
        XCTAssertTrue(p.sampled(acked: 131_072) == (false, true))
        for _ in 0..<100 {
            XCTAssertTrue(p.sampled(acked: 131_072) == (false, false))
        }
    }

    func testWithoutTCPInfoWrittenRepliesCount() {
        var p = ReadProgress()
        XCTAssertTrue(p.sampled(acked: nil) == (true, false))
        XCTAssertTrue(p.unsupported)
    }

    func testTheHeadOfTCPInfoReadsBytesAckedAtOffset120() {
        var h = ReadProgress.TCPInfoHead()
        withUnsafeMutableBytes(of: &h) { raw in
            XCTAssertEqual(raw.count, 128)
            raw.storeBytes(of: UInt64(123_456_789).littleEndian, toByteOffset: 120, as: UInt64.self)
        }
        XCTAssertEqual(h.bytesAcked, 123_456_789)
    }
}
