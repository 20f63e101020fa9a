// ChunkMap: the binary map of one native revision, `<id>.map`: a 64-byte
// header (magic, version, chunk size, image size, count, SHA-256 over header
// fields and digests) followed by one 32-byte chunk id per chunk of the image.
// Written once, durably; read with one read after its header was checked
// against its size.
import Crypto
import Foundation

public struct ChunkMap: Equatable, Sendable {
    public static let magic: [UInt8] = Array("BACKYMAP".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 64
    public static let defaultChunkSize = 4 * 1024 * 1024

    public var imageSize: UInt64
    public var chunkSize: Int
    public var chunks: [ChunkID]

    public init(imageSize: UInt64, chunkSize: Int = ChunkMap.defaultChunkSize, chunks: [ChunkID]) {
        self.imageSize = imageSize
        self.chunkSize = chunkSize
        self.chunks = chunks
    }

    /// A map of `imageSize` bytes whose chunks are all zero.
    public init(zeroImageOfSize size: UInt64, chunkSize: Int = ChunkMap.defaultChunkSize) {
        self.init(imageSize: size, chunkSize: chunkSize,
                  chunks: [ChunkID](repeating: .zero, count: ChunkMap.chunkCount(size, chunkSize)))
    }

    /// ceil(size / chunkSize), without overflow for any size (a damaged
    /// header may claim up to 2^64 - 1 bytes). `chunkSize` must be ≥ 512.
    public static func chunkCount(_ size: UInt64, _ chunkSize: Int) -> Int {
        precondition(chunkSize >= 512, "chunk size \(chunkSize)")
        let (q, r) = size.quotientAndRemainder(dividingBy: UInt64(chunkSize))
        return Int(q) + (r == 0 ? 0 : 1)
    }

    /// Chunk sizes a reader accepts: multiples of 512 up to 4 MiB (backy
    /// writes 4 MiB; the limit keeps a damaged header from sizing buffers).
    public static func acceptsChunkSize(_ cs: Int) -> Bool {
        cs >= 512 && cs <= defaultChunkSize && cs % 512 == 0
    }

    /// Length of chunk `i` (the last one may be shorter).
    public func length(of i: Int) -> Int {
        let start = UInt64(i) * UInt64(chunkSize)
        return Int(min(UInt64(chunkSize), imageSize - start))
    }

    public func offset(of i: Int) -> UInt64 { UInt64(i) * UInt64(chunkSize) }

    /// Distinct non-zero chunk ids.
    public var distinctChunks: Set<ChunkID> {
        var s = Set<ChunkID>(minimumCapacity: chunks.count)
        for c in chunks where !c.isZero { s.insert(c) }
        return s
    }

    // MARK: encoding

    public func encode() -> [UInt8] {
        let n = chunks.count
        var out = [UInt8](repeating: 0, count: ChunkMap.headerSize + 32 * n)
        out.withUnsafeMutableBytes { b in
            let p = b.baseAddress!
            for i in 0..<8 { p.storeBytes(of: ChunkMap.magic[i], toByteOffset: i, as: UInt8.self) }
            p.storeBytes(of: ChunkMap.version.littleEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: UInt32(chunkSize).littleEndian, toByteOffset: 12, as: UInt32.self)
            p.storeBytes(of: imageSize.littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: UInt64(n).littleEndian, toByteOffset: 24, as: UInt64.self)
            for (i, c) in chunks.enumerated() { c.store(to: p + ChunkMap.headerSize + 32 * i) }
            let sum = ChunkMap.checksum(UnsafeRawBufferPointer(b))
            sum.store(to: p + 32)
        }
        return out
    }

    /// SHA-256 over header bytes 0..<32 and all digests.
    static func checksum(_ b: UnsafeRawBufferPointer) -> ChunkID {
        var h = SHA256()
        h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: b[0..<32]))
        h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: b[ChunkMap.headerSize...]))
        return h.finalize().withUnsafeBytes { ChunkID(bytes: $0.baseAddress!) }
    }

    /// Whether the bytes start like a native map (to tell it from other files).
    public static func looksLikeMap(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 8 && Array(bytes[0..<8]) == magic
    }

    /// The fixed fields of a map file.
    public struct Header: Equatable, Sendable {
        public var chunkSize: Int
        public var imageSize: UInt64
        public var count: Int
        /// The size the whole file must have.
        public var fileSize: Int { ChunkMap.headerSize + 32 * count }
    }

    static func invalid(_ path: String, _ why: String) -> BackyError {
        BackyError(.corrupt, "\(path): not a valid chunk map (\(why))")
    }

    /// Checks the header's fields (not the checksum). Throws for anything a
    /// writer of this format cannot have written.
    public static func decodeHeader(_ b: UnsafeRawBufferPointer, path: String = "map") throws -> Header {
        guard b.count >= headerSize else { throw invalid(path, "\(b.count) bytes, shorter than the header") }
        for i in 0..<8 where b[i] != magic[i] { throw invalid(path, "bad magic") }
        let version = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard version == ChunkMap.version else { throw invalid(path, "unknown version \(version)") }
        let cs = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        let size = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        let count = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        guard acceptsChunkSize(cs) else { throw invalid(path, "chunk size \(cs)") }
        // Offsets are off_t: an image cannot be larger.
        guard size <= UInt64(Int64.max) else { throw invalid(path, "image size \(size)") }
        guard count == UInt64(chunkCount(size, cs)) else { throw invalid(path, "\(count) chunks for \(size) bytes") }
        // The file must be able to hold the digests (no overflow, < 2^62).
        guard count <= UInt64(Int.max / 64) else { throw invalid(path, "\(count) chunks") }
        return Header(chunkSize: cs, imageSize: size, count: Int(count))
    }

    public static func decode(_ bytes: [UInt8], path: String = "map") throws -> ChunkMap {
        return try bytes.withUnsafeBytes { b -> ChunkMap in
            let h = try decodeHeader(b, path: path)
            guard bytes.count == h.fileSize else {
                throw invalid(path, "\(bytes.count) bytes, expected \(h.fileSize)")
            }
            let p = b.baseAddress!
            let stored = ChunkID(bytes: p + 32)
            guard checksum(b) == stored else { throw invalid(path, "checksum mismatch") }
            var chunks = [ChunkID]()
            chunks.reserveCapacity(h.count)
            for i in 0..<h.count { chunks.append(ChunkID(bytes: p + headerSize + 32 * i)) }
            return ChunkMap(imageSize: h.imageSize, chunkSize: h.chunkSize, chunks: chunks)
        }
    }

    /// Reads a stored map's header and checks it against the object's size.
    public static func readHeader(from o: StoredObject, location: String) throws -> Header {
        guard o.isPlain else { throw invalid(location, "not a regular file") }
        var raw = [UInt8](repeating: 0, count: headerSize)
        let n = try raw.withUnsafeMutableBytes { try o.read(into: $0, at: 0) }
        let h = try raw.withUnsafeBytes { try decodeHeader(UnsafeRawBufferPointer(rebasing: $0[0..<n]), path: location) }
        guard Int64(o.size) == Int64(h.fileSize) else {
            throw invalid(location, "\(o.size) bytes, expected \(h.fileSize)")
        }
        return h
    }

    /// Reads and checks a whole stored map. Never allocates more than the
    /// object holds, whatever its header claims.
    public static func read(from o: StoredObject, location: String) throws -> ChunkMap {
        let h = try readHeader(from: o, location: location)
        var bytes = [UInt8](repeating: 0, count: h.fileSize)
        let n = try bytes.withUnsafeMutableBytes { try o.read(into: $0, at: 0) }
        guard n == h.fileSize else { throw invalid(location, "\(n) bytes, expected \(h.fileSize)") }
        return try decode(bytes, path: location)
    }
}
