// ByteFormatTests: backy 2.4's flexible byte formatter.
import Presentation
import XCTest

final class ByteFormatTests: XCTestCase {
    func testByteFormatVectors() {
        // backy 2.4's test_format_bytes vectors.
        XCTAssertEqual(ByteFormat.flexible(0), "0 Bytes")
        XCTAssertEqual(ByteFormat.flexible(1), "1 Byte")
        XCTAssertEqual(ByteFormat.flexible(2), "2 Bytes")
        XCTAssertEqual(ByteFormat.flexible(1023), "1023 Bytes")
        XCTAssertEqual(ByteFormat.flexible(2500), "2.44 kiB")
        XCTAssertEqual(ByteFormat.flexible(1024 * 1024), "1.00 MiB")
        XCTAssertEqual(ByteFormat.flexible(524_280), "511.99 kiB")
        XCTAssertEqual(ByteFormat.flexible(1 << 30), "1.00 GiB")
        XCTAssertEqual(ByteFormat.flexible(Int64(1) << 50), "1024.00 TiB")
    }
}
