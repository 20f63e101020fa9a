// BlockStatus: the base:allocation extents of an export for
// NBD_CMD_BLOCK_STATUS: zero chunks are holes that read as zeros, data and
// overlay blocks are data.
import ChunkStore
import Foundation

/// base:allocation extents of an image, with an optional overlay.
public enum BlockStatus {
    /// Extents for [offset, offset + length) (the range must lie in the
    /// image and `length` > 0). Zero chunks are holes that read as zeros;
    /// everything else, and all overlay blocks, is data. With `reqOne`
    /// exactly one extent, not longer than `length`.
    public static func extents(image: ImageReader, overlay: Overlay?, offset: UInt64, length: UInt32,
                               reqOne: Bool) -> [NBDExtent] {
        let end = offset + UInt64(length)
        let cs = UInt64(image.chunkSize)
        var out: [NBDExtent] = []
        func add(_ len: UInt64, _ flags: UInt32) {
            if let last = out.last, last.flags == flags {
                out[out.count - 1].length += UInt32(len)
            } else {
                out.append(NBDExtent(length: UInt32(len), flags: flags))
            }
        }
        var pos = offset
        while pos < end {
            let c = Int(pos / cs)
            let chunkEnd = min(end, UInt64(c + 1) * cs)
            let base: UInt32 = image.isZero(c) ? (NBD.stateHole | NBD.stateZero) : 0
            if let ov = overlay, ov.touches(chunk: c) {
                for r in ov.runs(offset: pos, length: chunkEnd - pos) {
                    add(r.length, r.inOverlay ? 0 : base)
                }
            } else {
                add(chunkEnd - pos, base)
            }
            pos = chunkEnd
            if reqOne && out.count > 1 { break }
        }
        if reqOne { return [out[0]] }
        return out
    }
}
