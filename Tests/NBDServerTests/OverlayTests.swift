// OverlayTests: the writable overlay's block map (Overlay): unaligned
// read-modify-write, zeroing across the image end, runs, and overlay blocks
// as data in block status.
import ChunkStore
import Foundation
import NBDServer
import NIOCore
import XCTest

final class OverlayTests: XCTestCase {
    func testOverlayReadModifyWriteAndRuns() throws {
        let img = MemoryImage(size: 4 * 65536 + 512, zeroChunks: [2])
        let ov = try Overlay(size: img.imageSize, chunkSize: img.chunkSize, directory: NSTemporaryDirectory())
        let base: Overlay.BaseReader = { off, out in
            img.bytes.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(off)..<(Int(off) + out.count)])) }
        }
        var model = img.bytes
        // Unaligned write spanning two 4 KiB blocks.
        let data = [UInt8](repeating: 0x5A, count: 5000)
        try data.withUnsafeBytes { try ov.write(offset: 3000, data: $0, base: base) }
        model.replaceSubrange(3000..<8000, with: data)
        XCTAssertEqual(ov.runs(offset: 0, length: 65536).map { $0.inOverlay }, [true, false])
        XCTAssertEqual(ov.runs(offset: 0, length: 65536).first?.length, 8192)
        // Zero a range inside the zero chunk and across the image end.
        try ov.zero(offset: 2 * 65536 + 100, length: 10, base: base)
        try ov.zero(offset: 4 * 65536 - 100, length: 612, base: base)
        for i in (4 * 65536 - 100)..<(4 * 65536 + 512) { model[i] = 0 }
        // Every byte reads back as the model says.
        for r in ov.runs(offset: 0, length: img.imageSize) {
            var got = [UInt8](repeating: 0, count: Int(r.length))
            if r.inOverlay {
                try got.withUnsafeMutableBytes { try ov.read(offset: r.offset, into: $0) }
            } else {
                try got.withUnsafeMutableBytes { try base(r.offset, $0) }
            }
            XCTAssertEqual(got, Array(model[Int(r.offset)..<Int(r.offset + r.length)]), "run at \(r.offset)")
        }
        // Overlay blocks are data in block status.
        let ext = BlockStatus.extents(image: img, overlay: ov, offset: 2 * 65536, length: 65536, reqOne: false)
        XCTAssertEqual(ext.first, NBDExtent(length: 4096, flags: 0))
        XCTAssertEqual(ext.last, NBDExtent(length: 65536 - 4096, flags: NBD.stateHole | NBD.stateZero))
    }
}
