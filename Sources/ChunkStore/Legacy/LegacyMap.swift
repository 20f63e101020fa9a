// LegacyMap: backy 2.4's JSON chunk map `<id>` ({"mapping": {"0": "<32 hex
// MurmurHash3>", …}, "size": N}), parsed with its limits (docs/store-format.md,
// "Revisions from backy 2.4").
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
}
