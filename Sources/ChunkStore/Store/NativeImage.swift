// NativeImage: a native revision as an image: its binary map and the job's
// chunk store; chunk i is the chunk its map names (zero chunks have none).

public final class NativeImage: ImageReader, Sendable {
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
    public func chunkKey(_ i: Int) -> ChunkKey { .sha256(map.chunks[i]) }

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
