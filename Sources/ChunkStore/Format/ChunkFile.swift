// ChunkFile: the byte layout of one chunk file (docs/store-format.md):
// a 16-byte header (magic "BKYC", version, codec, uncompressed length,
// payload length) followed by the payload, zstd-compressed or raw.

public enum ChunkCodec: UInt8, Sendable {
    case raw = 0
    case zstd = 1
}

public struct ChunkHeader: Equatable, Sendable {
    public static let size = 16
    public static let magic: [UInt8] = Array("BKYC".utf8)
    public static let version: UInt8 = 1

    public var codec: ChunkCodec
    public var uncompressedLength: UInt32
    public var payloadLength: UInt32

    public init(codec: ChunkCodec, uncompressedLength: UInt32, payloadLength: UInt32) {
        self.codec = codec
        self.uncompressedLength = uncompressedLength
        self.payloadLength = payloadLength
    }

    public func encode(to p: UnsafeMutableRawPointer) {
        for i in 0..<4 { p.storeBytes(of: ChunkHeader.magic[i], toByteOffset: i, as: UInt8.self) }
        p.storeBytes(of: ChunkHeader.version, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: codec.rawValue, toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: uncompressedLength.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: payloadLength.littleEndian, toByteOffset: 12, as: UInt32.self)
    }

    public var bytes: [UInt8] {
        var a = [UInt8](repeating: 0, count: ChunkHeader.size)
        a.withUnsafeMutableBytes { encode(to: $0.baseAddress!) }
        return a
    }

    /// Parses a header; returns a reason string when it is not valid.
    public static func decode(_ p: UnsafeRawBufferPointer) -> Result<ChunkHeader, ChunkFault> {
        guard p.count >= size else { return .failure(.truncated("header has \(p.count) of 16 bytes")) }
        for i in 0..<4 where p[i] != magic[i] { return .failure(.corrupt("bad magic")) }
        guard p[4] == version else { return .failure(.corrupt("unknown chunk format version \(p[4])")) }
        guard let codec = ChunkCodec(rawValue: p[5]) else { return .failure(.corrupt("unknown codec \(p[5])")) }
        guard p[6] == 0 && p[7] == 0 else { return .failure(.corrupt("reserved header bytes are not zero")) }
        let ul = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let pl = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        if codec == .raw && ul != pl { return .failure(.corrupt("raw chunk with payload \(pl) != length \(ul)")) }
        return .success(ChunkHeader(codec: codec, uncompressedLength: ul, payloadLength: pl))
    }
}

/// Why a chunk could not be read back.
public enum ChunkFault: Error, Equatable, Sendable, CustomStringConvertible {
    case missing
    case truncated(String)
    case corrupt(String)
    case hashMismatch(actual: String)
    case io(String)

    public var description: String {
        switch self {
        case .missing: return "chunk file is missing"
        case .truncated(let s): return "chunk file is truncated (\(s))"
        case .corrupt(let s): return "chunk file is corrupt (\(s))"
        case .hashMismatch(let a): return "content hash mismatch (data hashes to \(a))"
        case .io(let s): return "read error: \(s)"
        }
    }
}

/// A chunk that failed to read, with its name (64 hex digits for native
/// chunks, 32 for backy 2.4's) and, for native chunks, its id.
public struct ChunkReadError: Error, CustomStringConvertible {
    public let id: ChunkID
    public let name: String
    public let fault: ChunkFault
    public init(id: ChunkID, fault: ChunkFault) { self.id = id; self.name = id.hex; self.fault = fault }
    public init(name: String, fault: ChunkFault) { self.id = .zero; self.name = name; self.fault = fault }
    public var description: String { "chunk \(name): \(fault)" }
}
