// LegacyImage: a backy 2.4 chunked revision as an image: its JSON map, and
// its LZO chunks in the job's store, each checked against its MurmurHash3.
import Foundation

/// A backy 2.4 chunked revision as an image.
public final class LegacyImage: ImageReader, Sendable {
    public let map: LegacyMap
    public let store: ChunkStore

    public init(map: LegacyMap, store: ChunkStore) {
        self.map = map
        self.store = store
    }

    public var imageSize: UInt64 { map.size }
    public var chunkSize: Int { LegacyMap.chunkSize }
    public var chunkCount: Int { map.chunkCount }

    public func isZero(_ i: Int) -> Bool {
        map.mapping[i] == LegacyMap.zeroChunk && length(of: i) == LegacyMap.chunkSize
    }

    public func chunkName(_ i: Int) -> String { map.mapping[i] ?? "(missing map entry \(i))" }

    public func chunkKey(_ i: Int) -> ChunkKey {
        guard let h = map.mapping[i] else { return .unmapped(ImageIdentity(self), index: i) }
        return .mmh3(h, length: length(of: i))
    }

    public func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace ws: ChunkWorkspace) throws -> Int {
        let len = length(of: i)
        guard let hash = map.mapping[i] else {
            throw ChunkReadError(name: "(chunk \(i))", fault: .missing)
        }
        try LegacyImage.readChunk(hash: hash, store: store, into: out, workspace: ws, need: len)
        return len
    }

    /// Reads, decompresses and checks one legacy chunk; it must hold at
    /// least `need` bytes (a longer one is clamped by the caller).
    @discardableResult
    public static func readChunk(hash: String, store: ChunkStore, into out: UnsafeMutableRawBufferPointer,
                                 workspace ws: ChunkWorkspace, need: Int) throws -> Int {
        let o = try store.chunks.open(.legacy(hash))
        let size = o.size
        guard size <= LZO.maxFrameSize(uncompressed: LegacyMap.chunkSize), size <= ws.file.count else {
            throw ChunkReadError(name: hash, fault: .corrupt("\(size) bytes is larger than LZO can make of a 4 MiB chunk"))
        }
        let got: Int
        do { got = try o.read(into: ws.file.baseAddress!, count: size, at: 0) } catch {
            throw ChunkReadError(name: hash, fault: .io("\(error)"))
        }
        // A chunk may be longer than what the image still needs (after a
        // shrink): decompress where it fits, then hand out `need` bytes.
        let frame = UnsafeRawBufferPointer(rebasing: ws.file[0..<got])
        let full: Int
        do { full = try LZO.frameLength(frame) } catch { throw ChunkReadError(name: hash, fault: .corrupt("\(error)")) }
        let target = full <= out.count ? out : ws.spare
        guard full <= target.count else { throw ChunkReadError(name: hash, fault: .corrupt("chunk of \(full) bytes is larger than 4 MiB")) }
        let n: Int
        do {
            n = try LZO.decompress(frame, into: target)
        } catch {
            throw ChunkReadError(name: hash, fault: .corrupt("\(error)"))
        }
        let actual = MurmurHash3.hex(UnsafeRawBufferPointer(rebasing: target[0..<n]))
        if actual != hash { throw ChunkReadError(name: hash, fault: .hashMismatch(actual: actual)) }
        if n < need {
            throw ChunkReadError(name: hash, fault: .truncated("Under-run: \(n) bytes where the image needs \(need)"))
        }
        if target.baseAddress != out.baseAddress {
            out.baseAddress!.copyMemory(from: target.baseAddress!, byteCount: need)
        }
        return n
    }
}
