// ImageReader: random access to the image of one complete revision, chunk by
// chunk, whatever its storage format. Restore, verify, the NBD server and
// Mount read revisions only through this protocol; each reader names its
// chunks (`chunkKey`), so caches and the verifier never ask what kind of
// image they hold.

public protocol ImageReader: AnyObject, Sendable {
    var imageSize: UInt64 { get }
    var chunkSize: Int { get }
    var chunkCount: Int { get }
    /// True if chunk `i` is known to be all zeros without reading it.
    func isZero(_ i: Int) -> Bool
    /// A printable name of chunk `i`'s stored data (for error messages).
    func chunkName(_ i: Int) -> String
    /// What chunk `i`'s bytes are (see ChunkKey). Images without chunk names
    /// (a raw image, test images) need not say: by default the key is the
    /// image itself and the byte range.
    func chunkKey(_ i: Int) -> ChunkKey
    /// Reads chunk `i` (exactly `length(of: i)` bytes) into `out`, checking
    /// its hash. Throws `ChunkReadError` for damaged or missing data.
    func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace: ChunkWorkspace) throws -> Int
}

public extension ImageReader {
    func chunkKey(_ i: Int) -> ChunkKey {
        .bytes(ImageIdentity(self), offset: offset(of: i), length: length(of: i))
    }

    func length(of i: Int) -> Int {
        Int(min(UInt64(chunkSize), imageSize - UInt64(i) * UInt64(chunkSize)))
    }
    func offset(of i: Int) -> UInt64 { UInt64(i) * UInt64(chunkSize) }
}
