// ChunkStore: a job's content-addressed chunks, whatever backend holds them:
// a chunk's bytes are encoded once (ChunkFileCodec: zstd where it pays,
// else raw) and put whole or not at all; every read decodes them through the
// same codec and re-checks the SHA-256. Zero chunks are never stored.
import Foundation

public final class ChunkStore: Sendable {
    /// Where the chunks live (the storage seam).
    public let chunks: ChunkObjects

    public init(chunks: ChunkObjects) {
        self.chunks = chunks
    }

    /// Chunk files under `root`, laid out as in a job directory.
    public convenience init(root: String) {
        self.init(chunks: DirectoryChunks(root: root))
    }

    /// Creates what a new store needs (idempotent).
    public func create() throws { try chunks.prepare() }

    /// Where a chunk is stored (a file path for a job directory), for
    /// messages and reports.
    public func path(_ id: ChunkID) -> String { chunks.location(of: .native(id)) }

    public func exists(_ id: ChunkID) -> Bool { chunks.exists(id) }

    /// Encodes and stores one chunk and waits until it is in place. `data`
    /// holds the uncompressed bytes whose SHA-256 is `id`; `tag` names the
    /// writer's session. Returns the stored size.
    @discardableResult
    public func write(_ id: ChunkID, data: UnsafeRawBufferPointer, workspace ws: ChunkWorkspace, tag: String) throws -> Int {
        let p = try beginWrite(id, data: data, workspace: ws, session: tag)
        try p.commit()
        return p.size
    }

    /// Encodes chunk `id` and starts storing it; the caller commits or
    /// abandons the returned put (ChunkWriter's committer threads commit
    /// while its workers go on).
    public func beginWrite(_ id: ChunkID, data: UnsafeRawBufferPointer, workspace ws: ChunkWorkspace,
                           session: String) throws -> PendingPut {
        precondition(!id.isZero, "zero chunks are not stored")
        return try chunks.beginPut(id, ChunkFileCodec.encode(data, workspace: ws), session: session)
    }

    /// Makes the committed chunks durable (before a map names them).
    public func makeDurable(_ ids: [ChunkID]) throws { try chunks.makeDurable(ids) }

    /// Reads chunk `id` into `ws.data`, decompresses it and checks its hash.
    /// Returns the uncompressed length. Throws `ChunkReadError`.
    public func read(_ id: ChunkID, workspace ws: ChunkWorkspace) throws -> Int {
        try read(id, into: ws.data, workspace: ws, checkHash: true)
    }

    /// Reads chunk `id` into `out` (using `ws.file` as scratch and its
    /// decompressor). With `checkHash` the SHA-256 of the bytes must be `id`.
    public func read(_ id: ChunkID, into out: UnsafeMutableRawBufferPointer, workspace ws: ChunkWorkspace,
                     checkHash: Bool) throws -> Int {
        if id.isZero { throw ChunkReadError(id: id, fault: .corrupt("the zero chunk has no file")) }
        let n: Int
        do {
            let o = try chunks.open(.native(id))
            n = try ChunkFileCodec.decode(o, into: out, workspace: ws)
        } catch let e as ChunkReadError {
            throw ChunkReadError(id: id, fault: e.fault)
        } catch let f as ChunkFault {
            throw ChunkReadError(id: id, fault: f)
        }
        if checkHash {
            let actual = ChunkHash.id(of: UnsafeRawBufferPointer(rebasing: out[0..<n]))
            if actual != id { throw ChunkReadError(id: id, fault: .hashMismatch(actual: actual.hex)) }
        }
        return n
    }

    /// Every native chunk id in the store.
    public func allChunks() throws -> [ChunkID] {
        var ids: [ChunkID] = []
        try chunks.list(strict: false) { if case .native(let id) = $0 { ids.append(id) } }
        return ids
    }
}
