// ChunkFile: the byte layout of one stored chunk (docs/store-format.md,
// "Chunks"): a 16-byte header (magic "BKYC", version, codec, uncompressed
// length, payload length) followed by the payload, zstd-compressed or raw;
// and ChunkFileCodec, the one encoder and decoder of it that every backend's
// chunks go through.

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

/// Encodes chunks into the chunk-file format and decodes stored ones.
public enum ChunkFileCodec {
    /// Encodes `data` (a chunk's uncompressed bytes) with the workspace's
    /// compressor: the payload is zstd when that saves at least 1/32 of the
    /// bytes, else `data` itself (not copied). Header and zstd payload lie
    /// in `ws.file`, one after the other.
    public static func encode(_ data: UnsafeRawBufferPointer, workspace ws: ChunkWorkspace) -> EncodedChunk {
        let n = data.count
        var codec = ChunkCodec.raw
        var payloadLength = n
        let out = UnsafeMutableRawBufferPointer(rebasing: ws.file[ChunkHeader.size...])
        if let c = ws.compressor.compress(data, into: out), c < n - n / 32 {
            codec = .zstd
            payloadLength = c
        }
        ChunkHeader(codec: codec, uncompressedLength: UInt32(n), payloadLength: UInt32(payloadLength))
            .encode(to: ws.file.baseAddress!)
        let header = UnsafeRawBufferPointer(rebasing: ws.file[0..<ChunkHeader.size])
        let payload = codec == .zstd
            ? UnsafeRawBufferPointer(rebasing: ws.file[ChunkHeader.size..<(ChunkHeader.size + payloadLength)])
            : data
        return EncodedChunk(header: header, payload: payload)
    }

    /// Reads a stored chunk and decodes it into `out` (`ws.file` is
    /// scratch): the header, its lengths against the object's size, then the
    /// payload (a raw one straight into `out`), decompressed. Returns the
    /// uncompressed length. The caller checks the hash. Throws `ChunkFault`.
    public static func decode(_ o: StoredObject, into out: UnsafeMutableRawBufferPointer,
                              workspace ws: ChunkWorkspace) throws -> Int {
        do {
            let fileSize = o.size
            let got = try o.read(into: ws.file.baseAddress!, count: ChunkHeader.size, at: 0)
            let header: ChunkHeader
            switch ChunkHeader.decode(UnsafeRawBufferPointer(rebasing: ws.file[0..<got])) {
            case .success(let h): header = h
            case .failure(let f): throw f
            }
            let pl = Int(header.payloadLength)
            let ul = Int(header.uncompressedLength)
            if fileSize < ChunkHeader.size + pl {
                throw ChunkFault.truncated("\(fileSize - ChunkHeader.size) of \(pl) payload bytes")
            }
            if fileSize > ChunkHeader.size + pl {
                throw ChunkFault.corrupt("\(fileSize - ChunkHeader.size - pl) trailing bytes")
            }
            if ul > out.count || pl > ws.file.count - ChunkHeader.size {
                throw ChunkFault.corrupt("length \(ul) exceeds the chunk size")
            }
            switch header.codec {
            case .raw:
                let r = try o.read(into: out.baseAddress!, count: pl, at: ChunkHeader.size)
                if r != pl { throw ChunkFault.truncated("\(r) of \(pl) payload bytes") }
                return pl
            case .zstd:
                let r = try o.read(into: ws.file.baseAddress! + ChunkHeader.size, count: pl, at: ChunkHeader.size)
                if r != pl { throw ChunkFault.truncated("\(r) of \(pl) payload bytes") }
                let payload = UnsafeRawBufferPointer(rebasing: ws.file[ChunkHeader.size..<(ChunkHeader.size + pl)])
                let n: Int
                do {
                    n = try ws.decompressor.decompress(payload, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<ul]))
                } catch {
                    throw ChunkFault.corrupt("\(error)")
                }
                if n != ul { throw ChunkFault.corrupt("decompressed \(n) bytes, header says \(ul)") }
                return n
            }
        } catch let f as ChunkFault {
            throw f
        } catch {
            throw ChunkFault.io("\(error)")
        }
    }
}
