// VerifiedIndex: when each chunk was last read back and found good by
// `verify`, in one small object per job (`<job>/verified` in a job
// directory, docs/store-format.md): 12 bytes per chunk
// (the id's first 8 bytes and a u32 of Unix seconds), sorted. Lets sampling
// verify the least recently verified chunks first and `status` report the
// age of the oldest.
import Foundation

public struct VerifiedIndex: Sendable {
    public static let fileName = "verified"
    static let magic: [UInt8] = Array("BKYVRFY1".utf8)

    private var times: [UInt64: UInt32] = [:]

    public init() {}

    /// Where the job's index is stored (a file in a job directory).
    public static func path(_ job: Job) -> String { job.backend.location(of: .verifiedIndex) }

    /// The job's index; empty if there is none yet. One that cannot be read
    /// is an error (a read error is not "never verified": saving would
    /// throw the times away); one that is damaged is logged and rebuilt.
    public static func load(_ job: Job) throws -> VerifiedIndex {
        var idx = VerifiedIndex()
        let bytes: [UInt8]
        do {
            bytes = try job.backend.read(.verifiedIndex, limit: Posix.Limit.map)
        } catch let e as BackyError where e.isNoSuchFile {
            return idx
        } catch let e as BackyError where e.kind == .corrupt {
            job.log.warning("Ignoring the damaged verified index: \(e.message)")
            return idx
        }
        guard bytes.count >= 16, Array(bytes[0..<8]) == magic else {
            job.log.warning("Ignoring the damaged verified index \(path(job)) (bad header)")
            return idx
        }
        bytes.withUnsafeBytes { b in
            // The count must fit the file (a damaged one may say 2^64 - 1).
            let count = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            guard count <= UInt64((bytes.count - 16) / 12) else { return }
            let n = Int(count)
            idx.times.reserveCapacity(n)
            for i in 0..<n {
                let key = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 16 + 12 * i, as: UInt64.self))
                let t = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 24 + 12 * i, as: UInt32.self))
                idx.times[key] = t
            }
        }
        return idx
    }

    public var count: Int { times.count }

    /// Seconds since the epoch, 0 for never.
    public func lastVerifiedSeconds(_ id: ChunkID) -> UInt32 { times[id.w0] ?? 0 }

    public mutating func record<S: Sequence>(_ ids: S, at date: Date) where S.Element == ChunkID {
        let t = UInt32(clamping: Int64(date.timeIntervalSince1970))
        for id in ids { times[id.w0] = t }
    }

    /// Keeps only entries of these chunks.
    public mutating func prune(keeping ids: Set<ChunkID>) {
        let keys = Set(ids.map(\.w0))
        times = times.filter { keys.contains($0.key) }
    }

    public func save(_ job: Job) throws {
        let sorted = times.keys.sorted()
        var out = [UInt8](repeating: 0, count: 16 + 12 * sorted.count)
        out.withUnsafeMutableBytes { b in
            for i in 0..<8 { b[i] = VerifiedIndex.magic[i] }
            b.storeBytes(of: UInt64(sorted.count).littleEndian, toByteOffset: 8, as: UInt64.self)
            for (i, k) in sorted.enumerated() {
                b.storeBytes(of: k.littleEndian, toByteOffset: 16 + 12 * i, as: UInt64.self)
                b.storeBytes(of: times[k]!.littleEndian, toByteOffset: 24 + 12 * i, as: UInt32.self)
            }
        }
        try job.backend.write(.verifiedIndex, out, durable: true)
    }
}
