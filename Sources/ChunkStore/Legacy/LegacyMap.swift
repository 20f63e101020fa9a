// LegacyMap: backy 2.4's JSON chunk map `<id>` ({"mapping": {"0": "<32 hex
// MurmurHash3>", …}, "size": N}) and the paths of its LZO chunk files.
import Foundation

public struct LegacyMap: Sendable, Equatable {
    public static let chunkSize = 4 * 1024 * 1024
    public static let zeroChunk = "c72b4ba82d1f51b71c8a18195ad33fc8"  // 4 MiB of zeros

    public var size: UInt64
    public var mapping: [Int: String]

    public var chunkCount: Int { ChunkMap.chunkCount(size, LegacyMap.chunkSize) }

    /// Distinct chunk hashes referenced (including entries past the end).
    public var distinctChunks: Set<String> { Set(mapping.values) }

    public static func parse(_ bytes: [UInt8], path: String) throws -> LegacyMap {
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "{"), bytes[1] == UInt8(ascii: "\"") else {
            throw BackyError(.corrupt, "\(path): Revision does not look like it's chunked.")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw BackyError(.corrupt, "\(path): not a valid JSON chunk map")
        }
        // An integer number of bytes (a float or a huge number is damage;
        // NSNumber's conversions would silently wrap it).
        guard let sizeNum = obj["size"] as? NSNumber, let size = UInt64(sizeNum.stringValue),
              size <= UInt64(Int64.max) else {
            throw BackyError(.corrupt, "\(path): JSON chunk map has no valid size (\(String(describing: obj["size"] ?? "none")))")
        }
        guard let m = obj["mapping"] as? [String: Any] else {
            throw BackyError(.corrupt, "\(path): JSON chunk map has no mapping")
        }
        var mapping: [Int: String] = [:]
        mapping.reserveCapacity(m.count)
        for (k, v) in m {
            guard let i = Int(k), i >= 0, let h = v as? String, h.utf8.count == 32,
                  h.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
                throw BackyError(.corrupt, "\(path): bad map entry \(k): \(v)")
            }
            mapping[i] = h
        }
        let map = LegacyMap(size: size, mapping: mapping)
        // backy 2.4 writes an entry for every chunk (zeros too). A few
        // missing entries are read as "Under-run" errors of those chunks;
        // a size that needs far more chunks than the map names is damage
        // (and must not make readers allocate for it).
        if map.chunkCount > 2 * mapping.count + 16 {
            throw BackyError(.corrupt, "\(path): JSON chunk map names \(mapping.count) chunks, but its size \(size) needs \(map.chunkCount)")
        }
        return map
    }

    public static func read(path: String) throws -> LegacyMap {
        let bytes: [UInt8]
        do {
            bytes = try Posix.readFile(path, limit: Posix.Limit.map)
        } catch let e as BackyError where e.isNoSuchFile {
            throw BackyError(.notFound, e.message, errno: e.errno)
        }
        return try parse(bytes, path: path)
    }

    /// `chunks/<hh>/<hash>.chunk.lzo` (store v2), or v1's
    /// `chunks/<hh>/<hh>/<hash>.chunk.lzo` when only that exists.
    public static func chunkPath(store: ChunkStore, hash: String) -> String {
        let v2 = store.root + "/" + hash.prefix(2) + "/" + hash + ".chunk.lzo"
        if Posix.exists(v2) { return v2 }
        let v1 = store.root + "/" + hash.prefix(2) + "/" + hash.dropFirst(2).prefix(2) + "/" + hash + ".chunk.lzo"
        return Posix.exists(v1) ? v1 : v2
    }
}

/// A backy 2.4 chunked revision as an image.
public final class LegacyImage: ImageReader, @unchecked Sendable {
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

    public func chunkPath(_ i: Int) -> String? { map.mapping[i].map { LegacyMap.chunkPath(store: store, hash: $0) } }

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
        let p = LegacyMap.chunkPath(store: store, hash: hash)
        let fd = try ChunkStore.openChunkFile(p, name: hash)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ChunkReadError(name: hash, fault: .io("cannot stat \(p)")) }
        let size = Int(st.st_size)
        guard size <= LZO.maxFrameSize(uncompressed: LegacyMap.chunkSize), size <= ws.file.count else {
            throw ChunkReadError(name: hash, fault: .corrupt("\(size) bytes is larger than LZO can make of a 4 MiB chunk"))
        }
        let got: Int
        do { got = try Posix.preadFull(fd, ws.file.baseAddress!, size, 0, path: p) } catch {
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

/// A backy 2.x cowfile revision: `<id>` is the raw image. There are no
/// checksums to check.
public final class CowfileImage: ImageReader, @unchecked Sendable {
    public let path: String
    public let imageSize: UInt64
    public let chunkSize = LegacyMap.chunkSize

    public init(path: String) throws {
        guard let st = Posix.status(path) else { throw BackyError(.notFound, "\(path): raw image of a cowfile revision is missing") }
        self.path = path
        imageSize = UInt64(st.st_size)
    }

    public var chunkCount: Int { ChunkMap.chunkCount(imageSize, chunkSize) }
    public func isZero(_ i: Int) -> Bool { false }
    public func chunkName(_ i: Int) -> String { "\((path as NSString).lastPathComponent)@\(offset(of: i))" }
    public func chunkPath(_ i: Int) -> String? { nil }

    public func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace: ChunkWorkspace) throws -> Int {
        let len = length(of: i)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw ChunkReadError(name: chunkName(i), fault: .io("cannot open \(path): \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        let n: Int
        do { n = try Posix.preadFull(fd, out.baseAddress!, len, Int64(offset(of: i)), path: path) } catch {
            throw ChunkReadError(name: chunkName(i), fault: .io("\(error)"))
        }
        if n != len { throw ChunkReadError(name: chunkName(i), fault: .truncated("\(n) of \(len) bytes")) }
        return n
    }
}
