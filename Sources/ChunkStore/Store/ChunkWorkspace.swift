// ChunkWorkspace: the buffers and zstd contexts one worker thread reuses for
// every chunk it handles, so the data path allocates nothing per chunk.
import Foundation

public final class ChunkWorkspace {
    public static let chunkSize = 4 * 1024 * 1024

    /// Uncompressed chunk bytes.
    public let data: UnsafeMutableRawBufferPointer
    /// Encoded chunk file bytes: a native chunk file (header + payload) or
    /// a backy 2.4 LZO chunk, whichever can be larger.
    public let file: UnsafeMutableRawBufferPointer
    public let compressor: ZstdCompressor
    public let decompressor: ZstdDecompressor

    /// `level`: the zstd level of chunks this workspace encodes
    /// (`DataPathOptions.zstdLevel`).
    public init(chunkSize: Int = ChunkWorkspace.chunkSize, level: Int32 = DataPathOptions.defaultZstdLevel) {
        data = .allocate(byteCount: chunkSize, alignment: 4096)
        file = .allocate(byteCount: max(ChunkHeader.size + max(ZstdCompressor.bound(chunkSize), chunkSize),
                                        LZO.maxFrameSize(uncompressed: chunkSize)), alignment: 4096)
        compressor = ZstdCompressor(level: level)
        decompressor = ZstdDecompressor()
    }

    private var spareBuffer: UnsafeMutableRawBufferPointer?

    /// A second chunk-sized buffer, allocated on first use.
    public var spare: UnsafeMutableRawBufferPointer {
        if let b = spareBuffer { return b }
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count, alignment: 4096)
        spareBuffer = b
        return b
    }

    deinit {
        data.deallocate()
        file.deallocate()
        spareBuffer?.deallocate()
    }
}
