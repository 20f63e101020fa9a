// ChunkMap: the binary map of one native revision, `<id>.map`: a 64-byte
// header (magic, version, chunk size, image size, count, SHA-256 over header
// fields and digests) followed by one 32-byte chunk id per chunk of the image.
// Written once (temp, fsync, rename, directory fsync); read with one read.
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

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

    public static func chunkCount(_ size: UInt64, _ chunkSize: Int) -> Int {
        Int((size + UInt64(chunkSize) - 1) / UInt64(chunkSize))
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

    public static func decode(_ bytes: [UInt8], path: String = "map") throws -> ChunkMap {
        func bad(_ why: String) -> BackyError { BackyError(.corrupt, "\(path): not a valid chunk map (\(why))") }
        guard bytes.count >= headerSize else { throw bad("\(bytes.count) bytes, shorter than the header") }
        return try bytes.withUnsafeBytes { b -> ChunkMap in
            let p = b.baseAddress!
            guard Array(bytes[0..<8]) == magic else { throw bad("bad magic") }
            let version = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            guard version == ChunkMap.version else { throw bad("unknown version \(version)") }
            let cs = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
            let size = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            let count = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
            guard cs > 0, cs % 512 == 0 else { throw bad("chunk size \(cs)") }
            guard count == UInt64(chunkCount(size, cs)) else { throw bad("\(count) chunks for \(size) bytes") }
            guard UInt64(bytes.count) == UInt64(headerSize) + 32 * count else {
                throw bad("\(bytes.count) bytes, expected \(UInt64(headerSize) + 32 * count)")
            }
            let stored = ChunkID(bytes: p + 32)
            guard checksum(b) == stored else { throw bad("checksum mismatch") }
            var chunks = [ChunkID]()
            chunks.reserveCapacity(Int(count))
            for i in 0..<Int(count) { chunks.append(ChunkID(bytes: p + headerSize + 32 * i)) }
            return ChunkMap(imageSize: size, chunkSize: cs, chunks: chunks)
        }
    }

    public static func read(path: String) throws -> ChunkMap {
        let bytes: [UInt8]
        do { bytes = try Posix.readFile(path) } catch let e as BackyError { throw BackyError(.notFound, e.message) }
        return try decode(bytes, path: path)
    }

    /// Writes the map durably: temp, fsync, rename, directory fsync.
    public func write(path: String) throws {
        try Posix.writeFileAtomically(path, encode(), mode: 0o440, durable: true)
    }
}
