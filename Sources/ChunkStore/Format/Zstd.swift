// Zstd: one compression and one decompression context per worker thread,
// wrapping libzstd's simple one-shot API over caller-owned buffers.
import CZstd

public enum ZstdError: Error, CustomStringConvertible {
    case failed(String)
    public var description: String {
        switch self { case .failed(let s): return "zstd: \(s)" }
    }
}

/// A zstd compression context. Not thread-safe: one per worker.
public final class ZstdCompressor {
    private let ctx: OpaquePointer
    public let level: Int32

    public init(level: Int32 = 1) {
        ctx = ZSTD_createCCtx()!
        self.level = level
    }
    deinit { ZSTD_freeCCtx(ctx) }

    /// Upper bound of the compressed size of `n` bytes.
    public static func bound(_ n: Int) -> Int { Int(ZSTD_compressBound(n)) }

    /// Compresses `src` into `dst`; returns the compressed length, or nil if
    /// it does not fit into `dst` (the caller then stores the bytes raw).
    public func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> Int? {
        let r = ZSTD_compressCCtx(ctx, dst.baseAddress, dst.count, src.baseAddress, src.count, level)
        if ZSTD_isError(r) != 0 { return nil }
        return Int(r)
    }
}

/// A zstd decompression context. Not thread-safe: one per worker.
public final class ZstdDecompressor {
    private let ctx: OpaquePointer

    public init() { ctx = ZSTD_createDCtx()! }
    deinit { ZSTD_freeDCtx(ctx) }

    /// Decompresses `src` into `dst`; returns the decompressed length. `src`
    /// must be exactly one zstd frame whose header has its unused and
    /// reserved bits clear (bits libzstd itself would not look at), so any
    /// change to a stored frame is found.
    public func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws -> Int {
        if src.count >= 5 && src[4] & 0x18 != 0 {
            throw ZstdError.failed("frame header has unused or reserved bits set")
        }
        let frame = ZSTD_findFrameCompressedSize(src.baseAddress, src.count)
        if ZSTD_isError(frame) != 0 {
            throw ZstdError.failed(String(cString: ZSTD_getErrorName(frame)))
        }
        if Int(frame) != src.count {
            throw ZstdError.failed("\(src.count - Int(frame)) bytes after the frame")
        }
        let r = ZSTD_decompressDCtx(ctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(r) != 0 {
            throw ZstdError.failed(String(cString: ZSTD_getErrorName(r)))
        }
        return Int(r)
    }
}
