// LZO: reads python-lzo's framing of backy 2.4 chunks: one byte 0xF0
// (LZO1X-1) or 0xF1 (LZO1X-999), the uncompressed length as a big-endian
// u32, then an LZO1X stream, decompressed with liblzo2's safe decompressor.
import CLZO

public enum LZO {
    private static let initialised: Bool = backy_lzo_init() == LZO_E_OK

    public enum Failure: Error, CustomStringConvertible {
        case header(String)
        case decompress(Int32)
        case length(expected: Int, got: Int)
        public var description: String {
            switch self {
            case .header(let s): return "not a python-lzo frame (\(s))"
            case .decompress(let e): return "LZO decompression failed (error \(e))"
            case .length(let e, let g): return "LZO data decompressed to \(g) bytes, frame says \(e)"
            }
        }
    }

    /// The largest python-lzo frame of `n` uncompressed bytes: LZO1X's
    /// worst case for incompressible data (n + n/16 + 64 + 3) plus the
    /// 5-byte header. backy 2.4 wrote such chunks for encrypted disks.
    public static func maxFrameSize(uncompressed n: Int) -> Int {
        n + n / 16 + 64 + 3 + 5
    }

    /// The uncompressed length a frame announces.
    public static func frameLength(_ src: UnsafeRawBufferPointer) throws -> Int {
        guard src.count >= 5 else { throw Failure.header("\(src.count) bytes") }
        guard src[0] == 0xF0 || src[0] == 0xF1 else { throw Failure.header(String(format: "first byte 0x%02x", src[0])) }
        return Int(src[1]) << 24 | Int(src[2]) << 16 | Int(src[3]) << 8 | Int(src[4])
    }

    /// Decompresses a python-lzo frame into `dst`; returns the length.
    public static func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws -> Int {
        precondition(initialised, "liblzo2 failed to initialise")
        let want = try frameLength(src)
        guard want <= dst.count else { throw Failure.header("length \(want) exceeds the buffer (\(dst.count))") }
        var outLen = lzo_uint(want)
        let r = lzo1x_decompress_safe(src.baseAddress!.assumingMemoryBound(to: UInt8.self) + 5, lzo_uint(src.count - 5),
                                      dst.baseAddress!.assumingMemoryBound(to: UInt8.self), &outLen, nil)
        if r != LZO_E_OK { throw Failure.decompress(r) }
        if Int(outLen) != want { throw Failure.length(expected: want, got: Int(outLen)) }
        return want
    }
}
