// ImageReader: random access to the image of one complete revision, chunk by
// chunk, whatever its storage format. Restore, verify and the NBD server read
// revisions only through this protocol.

public protocol ImageReader: AnyObject, Sendable {
    var imageSize: UInt64 { get }
    var chunkSize: Int { get }
    var chunkCount: Int { get }
    /// True if chunk `i` is known to be all zeros without reading it.
    func isZero(_ i: Int) -> Bool
    /// A printable name of chunk `i`'s stored data (for error messages).
    func chunkName(_ i: Int) -> String
    /// The file holding chunk `i`, if it is stored in one.
    func chunkPath(_ i: Int) -> String?
    /// Reads chunk `i` (exactly `length(of: i)` bytes) into `out`, checking
    /// its hash. Throws `ChunkReadError` for damaged or missing data.
    func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace: ChunkWorkspace) throws -> Int
}

public extension ImageReader {
    /// Readers without chunk files (in-memory test images) need not say.
    func chunkPath(_ i: Int) -> String? { nil }

    func length(of i: Int) -> Int {
        Int(min(UInt64(chunkSize), imageSize - UInt64(i) * UInt64(chunkSize)))
    }
    func offset(of i: Int) -> UInt64 { UInt64(i) * UInt64(chunkSize) }
}

/// A native revision: binary map + SHA-256 chunk store.
public final class NativeImage: ImageReader, @unchecked Sendable {
    public let map: ChunkMap
    public let store: ChunkStore

    public init(map: ChunkMap, store: ChunkStore) {
        self.map = map
        self.store = store
    }

    public var imageSize: UInt64 { map.imageSize }
    public var chunkSize: Int { map.chunkSize }
    public var chunkCount: Int { map.chunks.count }
    public func isZero(_ i: Int) -> Bool { map.chunks[i].isZero }
    public func chunkName(_ i: Int) -> String { map.chunks[i].hex }
    public func chunkPath(_ i: Int) -> String? { map.chunks[i].isZero ? nil : store.path(map.chunks[i]) }

    public func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace: ChunkWorkspace) throws -> Int {
        let id = map.chunks[i]
        let len = map.length(of: i)
        if id.isZero {
            out.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: len)
            return len
        }
        let n = try store.read(id, into: out, workspace: workspace, checkHash: true)
        if n != len {
            throw ChunkReadError(id: id, fault: .corrupt("\(n) bytes where the image needs \(len)"))
        }
        return n
    }
}
