// Quarantine: where verify puts a chunk file that failed its check, with a
// report (chunk name, expected and actual hash, fault, time, the revisions
// that reference it) instead of deleting it like backy 2.4 did.
import ChunkStore
import Foundation

public enum Quarantine {
    public static let directoryName = "quarantine"

    public struct Report: Sendable {
        public let name: String
        public let fault: String
        public let actual: String?
        public let time: Date
        public let revisions: [String]
        public let file: String?
    }

    public static func directory(_ job: Job) -> String { job.path + "/" + directoryName }

    /// Moves the chunk file at `path` (if any) into quarantine and writes its
    /// report. `name` is the chunk's name (its expected hash); `hash` names
    /// the hash function. Call while holding the gate exclusively.
    @discardableResult
    public static func isolate(job: Job, name: String, path: String?, hash: String = "sha256", fault: ChunkFault,
                               revisions: [String], now: Date = Date()) throws -> Report {
        let dir = directory(job)
        try Posix.mkdirIfMissing(dir)
        let stamp = Timestamp.iso8601(now).replacingOccurrences(of: ":", with: "")
        var moved: String? = nil
        if let src = path, Posix.exists(src) {
            let dst = dir + "/" + name + "." + stamp + "." + (src as NSString).lastPathComponent.split(separator: ".").dropFirst().joined(separator: ".")
            try Posix.rename(src, dst)
            try Posix.fsyncDirectory(dir)
            moved = dst
        }
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
        try Posix.writeFileAtomically(dir + "/" + name + "." + stamp + ".json", Array(data) + [10], mode: 0o644)
        return report
    }

    /// Names of chunks with a report in quarantine.
    public static func reported(_ job: Job) -> Set<String> {
        guard let names = try? Posix.listDirectory(directory(job)) else { return [] }
        return Set(names.filter { $0.hasSuffix(".json") }.map { String($0.prefix { $0 != "." }) })
    }
}
