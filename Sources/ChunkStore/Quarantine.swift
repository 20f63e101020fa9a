// Quarantine: where verify puts a chunk file that failed its check, with a
// report (chunk id, expected and actual hash, fault, time, the revisions that
// reference it) instead of deleting it like backy 2.4 did.
import Foundation

public enum Quarantine {
    public static let directoryName = "quarantine"

    public struct Report: Sendable {
        public let id: ChunkID
        public let fault: String
        public let actual: ChunkID?
        public let time: Date
        public let revisions: [String]
        public let file: String?
    }

    public static func directory(_ job: Job) -> String { job.path + "/" + directoryName }

    /// Moves the chunk file (if any) into quarantine and writes its report.
    /// Call while holding the gate exclusively.
    @discardableResult
    public static func isolate(job: Job, id: ChunkID, fault: ChunkFault, revisions: [String], now: Date = Date()) throws -> Report {
        let dir = directory(job)
        try Posix.mkdirIfMissing(dir)
        let stamp = Timestamp.iso8601(now).replacingOccurrences(of: ":", with: "")
        var moved: String? = nil
        let src = job.store.path(id)
        if Posix.exists(src) {
            let dst = dir + "/" + id.hex + "." + stamp + ".chunk"
            try Posix.rename(src, dst)
            try Posix.fsyncDirectory(dir)
            moved = dst
        }
        var actual: ChunkID? = nil
        if case .hashMismatch(let a) = fault { actual = a }
        let report = Report(id: id, fault: fault.description, actual: actual, time: now, revisions: revisions.sorted(), file: moved)
        let json: [String: Any] = [
            "chunk": id.hex,
            "expected_sha256": id.hex,
            "actual_sha256": actual?.hex as Any? ?? NSNull(),
            "fault": fault.description,
            "time": Timestamp.iso8601(now),
            "revisions": revisions.sorted(),
            "file": moved as Any? ?? NSNull(),
        ]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try Posix.writeFileAtomically(dir + "/" + id.hex + "." + stamp + ".json", Array(data) + [10], mode: 0o644)
        return report
    }

    /// Chunk ids with a report in quarantine.
    public static func reported(_ job: Job) -> Set<ChunkID> {
        guard let names = try? Posix.listDirectory(directory(job)) else { return [] }
        return Set(names.filter { $0.hasSuffix(".json") }.compactMap { ChunkID(hex: $0.prefix(64)) })
    }
}
