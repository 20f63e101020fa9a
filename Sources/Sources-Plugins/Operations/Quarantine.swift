// Quarantine: where verify puts a chunk that failed its check, with a
// report (chunk name, expected and actual hash, fault, time, the revisions
// that reference it) instead of deleting it like backy 2.4 did
// (docs/store-format.md, "Verification at rest, quarantine").
import ChunkStore
import Foundation

public enum Quarantine {
    public struct Report: Sendable {
        public let name: String
        public let fault: String
        public let actual: String?
        public let time: Date
        public let revisions: [String]
        public let file: String?
    }

    /// Moves the stored chunk `stored` (if there is one) aside and writes
    /// its report. `name` is the chunk's name (its expected hash); `hash`
    /// names the hash function. Call while holding the gate exclusively.
    @discardableResult
    public static func isolate(job: Job, name: String, stored: StoredChunk?, hash: String = "sha256", fault: ChunkFault,
                               revisions: [String], now: Date = Date()) throws -> Report {
        let stamp = Timestamp.iso8601(now).replacingOccurrences(of: ":", with: "")
        let moved = try stored.flatMap { try job.backend.quarantine($0, stamp: stamp) }
        var actual: String? = nil
        if case .hashMismatch(let a) = fault { actual = a }
        let report = Report(name: name, fault: fault.description, actual: actual, time: now, revisions: revisions.sorted(), file: moved)
        let json: [String: Any] = [
            "chunk": name,
            "hash": hash,
            "expected_\(hash)": name,
            "actual_\(hash)": actual as Any? ?? NSNull(),
            "fault": fault.description,
            "time": Timestamp.iso8601(now),
            "revisions": revisions.sorted(),
            "file": moved as Any? ?? NSNull(),
        ]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try job.backend.write(.quarantineReport(name + "." + stamp + ".json"), Array(data) + [10], durable: true)
        return report
    }

    /// Names of chunks with a report in quarantine.
    public static func reported(_ job: Job) -> Set<String> {
        guard let names = try? job.backend.listQuarantineReports() else { return [] }
        return Set(names.map { String($0.prefix { $0 != "." }) })
    }
}
