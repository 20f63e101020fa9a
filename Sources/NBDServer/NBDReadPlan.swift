// NBDReadPlan: what one NBD read is made of and how its reply is put
// together, as pure functions: the read's range cut into segments (zeros,
// part of a chunk, overlay data), the reply budget it may pin, and the
// reply's buffers once every segment's bytes are there (a simple reply, one
// OFFSET_DATA chunk with NBD_CMD_FLAG_DF, else OFFSET_DATA and OFFSET_HOLE
// chunks by runs; docs/nbd.md, "Protocol"). No I/O: NBDConnection loads the
// segments' bytes (ChunkCache, the overlay) and sends what `reply` returns.
import ChunkStore
import NIOCore

enum NBDReadPlan {
    /// One piece of a read: zeros, part of a chunk, or overlay data.
    enum Segment: Equatable {
        case zero(offset: UInt64, length: Int)
        case chunk(index: Int, inChunk: Int, offset: UInt64, length: Int)
        case overlay(offset: UInt64, length: Int)

        var offset: UInt64 {
            switch self {
            case .zero(let o, _), .chunk(_, _, let o, _), .overlay(let o, _): return o
            }
        }
        var length: Int {
            switch self {
            case .zero(_, let l), .chunk(_, _, _, let l), .overlay(_, let l): return l
            }
        }
        var isZero: Bool { if case .zero = self { return true } else { return false } }
    }

    /// A run of one chunk's range that the overlay holds (`inOverlay`) or
    /// leaves to the revision.
    typealias OverlayRun = (offset: UInt64, length: UInt64, inOverlay: Bool)

    /// The segments of `length` bytes at `offset` of an image of
    /// `chunkSize`-byte chunks. `isZero(c)` tells a chunk known to be zeros;
    /// `overlayRuns(c, from, to)` the overlay's runs of chunk `c` in that
    /// range, or nil where the overlay does not touch the chunk. Adjacent
    /// zeros of the revision merge into one segment.
    static func segments(offset: UInt64, length: Int, chunkSize: Int, isZero: (Int) -> Bool,
                         overlayRuns: (Int, UInt64, UInt64) -> [OverlayRun]?) -> [Segment] {
        var segs: [Segment] = []
        let cs = UInt64(chunkSize)
        let end = offset + UInt64(length)
        var pos = offset
        func base(_ c: Int, _ from: UInt64, _ to: UInt64) {
            if isZero(c) {
                if case .zero(let o, let l)? = segs.last, o + UInt64(l) == from {
                    segs[segs.count - 1] = .zero(offset: o, length: l + Int(to - from))
                } else {
                    segs.append(.zero(offset: from, length: Int(to - from)))
                }
            } else {
                segs.append(.chunk(index: c, inChunk: Int(from - UInt64(c) * cs), offset: from, length: Int(to - from)))
            }
        }
        while pos < end {
            let c = Int(pos / cs)
            let pieceEnd = min(end, UInt64(c + 1) * cs)
            if let runs = overlayRuns(c, pos, pieceEnd) {
                for r in runs {
                    if r.inOverlay {
                        segs.append(.overlay(offset: r.offset, length: Int(r.length)))
                    } else {
                        base(c, r.offset, r.offset + r.length)
                    }
                }
            } else {
                base(c, pos, pieceEnd)
            }
            pos = pieceEnd
        }
        return segs
    }

    /// The segments of a read of a revision image, through its overlay.
    static func segments(image: ImageReader, overlay: Overlay?, offset: UInt64, length: Int) -> [Segment] {
        segments(offset: offset, length: length, chunkSize: image.chunkSize, isZero: { image.isZero($0) },
                 overlayRuns: { c, from, to in
                     guard let ov = overlay, ov.touches(chunk: c) else { return nil }
                     return ov.runs(offset: from, length: to - from)
                 })
    }

    /// What a reply made of these segments may keep alive, taken from the
    /// reply budget before the read starts: copied bytes, or a whole chunk
    /// buffer for a large slice of one.
    static func cost(_ segments: [Segment]) -> Int {
        var c = 0
        for seg in segments {
            switch seg {
            case .zero(_, let len): c += min(len, ReplyWriter.copyLimit)
            case .chunk(_, _, _, let len): c += len < ReplyWriter.copyLimit ? len : ChunkMemory.slabSize
            case .overlay(_, let len): c += len
            }
        }
        return c
    }

    /// The reply to a read whose segments' bytes are `data` (a chunk's whole
    /// buffer for `.chunk`, the bytes for `.overlay`, nil for `.zero`), and
    /// the bytes it keeps alive until written (copied bytes, or the capacity
    /// of each chunk buffer it sends slices of).
    static func reply(to req: NBDRequest, structured: Bool, segments segs: [Segment], data: [ByteBuffer?],
                      allocator: ByteBufferAllocator) -> (buffers: [ByteBuffer], cost: Int) {
        var out = ReplyWriter(allocator: allocator)
        var cost = 0
        func appendData(_ k: Int) {
            let seg = segs[k]
            switch seg {
            case .zero(_, let len):
                out.zeros(len)
                cost += min(len, ReplyWriter.copyLimit)
            case .chunk(_, let inChunk, _, let len):
                let buf = data[k]!
                let slice = buf.getSlice(at: buf.readerIndex + inChunk, length: len)!
                if len < ReplyWriter.copyLimit {
                    out.copy(slice)
                    cost += len
                } else {
                    out.append(slice)
                    cost += buf.capacity
                }
            case .overlay:
                out.append(data[k]!)
                cost += seg.length
            }
        }
        if !structured {
            out.header { NBDEncode.simpleReply(&$0, error: 0, handle: req.handle) }
            for k in segs.indices { appendData(k) }
        } else if req.flags & NBD.cmdFlagDF != 0 {
            out.header { NBDEncode.dataHeader(&$0, handle: req.handle, offset: req.offset, dataLength: Int(req.length), done: true) }
            for k in segs.indices { appendData(k) }
        } else {
            // Runs of data become OFFSET_DATA chunks, runs of zeros OFFSET_HOLE.
            var k = 0
            while k < segs.count {
                var j = k
                var len = 0
                while j < segs.count && segs[j].isZero == segs[k].isZero {
                    len += segs[j].length
                    j += 1
                }
                let last = j == segs.count
                let off = segs[k].offset
                if segs[k].isZero {
                    out.header { NBDEncode.hole(&$0, handle: req.handle, offset: off, length: UInt32(len), done: last) }
                } else {
                    out.header { NBDEncode.dataHeader(&$0, handle: req.handle, offset: off, dataLength: len, done: last) }
                    for m in k..<j { appendData(m) }
                }
                k = j
            }
        }
        return (out.finish(), cost)
    }

    /// The reply to a read of zero bytes.
    static func emptyReply(to req: NBDRequest, structured: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        var b = allocator.buffer(capacity: 20)
        if structured {
            NBDEncode.structuredHeader(&b, flags: NBD.replyFlagDone, type: NBD.replyTypeNone, handle: req.handle, length: 0)
        } else {
            NBDEncode.simpleReply(&b, error: 0, handle: req.handle)
        }
        return b
    }
}

/// Collects the buffers of one reply: small pieces are copied into one
/// buffer, large ones are sent as they are (slices of cached chunks).
struct ReplyWriter {
    static let copyLimit = 64 << 10
    /// A shared buffer of zeros for replies that must carry zero bytes.
    static let zeros: ByteBuffer = {
        var b = ByteBufferAllocator().buffer(capacity: 256 << 10)
        b.writeRepeatingByte(0, count: 256 << 10)
        return b
    }()

    let allocator: ByteBufferAllocator
    var buffers: [ByteBuffer] = []
    var current: ByteBuffer

    init(allocator: ByteBufferAllocator) {
        self.allocator = allocator
        current = allocator.buffer(capacity: 256)
    }

    mutating func header(_ body: (inout ByteBuffer) -> Void) {
        body(&current)
    }

    mutating func copy(_ b: ByteBuffer) {
        var b = b
        current.writeBuffer(&b)
    }

    mutating func append(_ b: ByteBuffer) {
        if current.readableBytes > 0 {
            buffers.append(current)
            current = allocator.buffer(capacity: 256)
        }
        buffers.append(b)
    }

    mutating func zeros(_ n: Int) {
        if n < Self.copyLimit {
            current.writeRepeatingByte(0, count: n)
            return
        }
        var left = n
        while left > 0 {
            let k = min(left, Self.zeros.readableBytes)
            append(Self.zeros.getSlice(at: Self.zeros.readerIndex, length: k)!)
            left -= k
        }
    }

    mutating func finish() -> [ByteBuffer] {
        if current.readableBytes > 0 || buffers.isEmpty { buffers.append(current) }
        return buffers
    }
}
