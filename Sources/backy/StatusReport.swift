// StatusReport: `backy status` as text (backy 2.4's table with the Trust
// column and its summary line) and as JSON. A revision whose files are
// damaged shows trust `damaged` (with the reason), a future-dated one is
// flagged.
import ChunkStore
import Foundation
import Presentation

public enum StatusReport {
    /// What is wrong with some revisions: id → why it is damaged, and the
    /// ids of future-dated ones.
    public struct Flags: Sendable {
        public var damage: [String: String] = [:]
        public var future: Set<String> = []
        public init() {}

        /// Checks every revision of `job` (cheaply: map headers, see
        /// `Job.damage(of:)`).
        public init(job: Job, revisions: [Revision], now: Date = Date()) {
            for r in revisions {
                if let why = job.damage(of: r) { damage[r.id] = why }
                if r.isComplete && r.isFutureDated(now: now) { future.insert(r.id) }
            }
        }

        /// One line per flagged revision, for under the table.
        public func lines(_ revs: [Revision]) -> [String] {
            var out: [String] = []
            for r in revs {
                if let why = damage[r.id] { out.append("Revision \(r.id) is DAMAGED: \(why)") }
                if future.contains(r.id) {
                    out.append("Revision \(r.id) is dated in the future (\(Timestamp.formatSeconds(r.timestamp)) UTC): it is never `latest` and does not count for the schedule; use its id")
                }
            }
            return out
        }
    }

    /// The revision table: backy 2.4's columns with full names, plus
    /// `Stored` (bytes this revision's backup added to the store). An
    /// incomplete revision (an interrupted or running backup) shows trust
    /// `incomplete` and no duration.
    public static func table(_ revs: [Revision], flags: Flags = Flags()) -> String {
        var t = TextTable(["Date (UTC)", "ID", "Size", "Stored", "Duration", "Tags", "Trust"],
                          align: [.left, .left, .right, .right, .right, .left, .left])
        var total: Int64 = 0
        for r in revs {
            // Saturating: damaged .rev files may claim anything.
            let (sum, overflow) = total.addingReportingOverflow(r.bytesWritten)
            total = overflow ? (r.bytesWritten > 0 ? .max : .min) : sum
            let dur = r.duration.map { DurationFormat.seconds($0) } ?? "-"
            let stored = r.isComplete ? r.bytesStored.map { ByteFormat.flexible($0) } ?? "-" : "-"
            t.add([Timestamp.formatSeconds(r.timestamp), r.id, ByteFormat.flexible(r.bytesWritten), stored, dur,
                   r.sortedTags.joined(separator: ","), trustText(r, flags: flags)])
        }
        return t.render() + "\n\(count(revs.count, "revision")) containing \(ByteFormat.flexible(total)) data (estimated)"
    }

    /// The Trust column: `damaged`, `incomplete`, or the revision's trust.
    public static func trustText(_ r: Revision, flags: Flags) -> String {
        if flags.damage[r.id] != nil { return "damaged" }
        if !r.isComplete { return "incomplete" }
        return r.trust.rawValue
    }

    /// "1 revision", "3 revisions".
    public static func count(_ n: Int, _ noun: String) -> String { Counted.text(n, noun) }

    /// The verification coverage line under the status table.
    public static func coverageLine(chunks: Int, neverVerified: Int, oldest: Date?, quarantined: Int, legacyRevisions: Int = 0,
                                    stored: Int64? = nil, disk: Int64? = nil, now: Date = Date()) -> String {
        var s = count(chunks, "chunk")
        if chunks == 0 {
        } else if neverVerified > 0 {
            s += "; \(neverVerified) never verified at rest"
            if let oldest { s += ", the least recently verified one \(DurationFormat.age(now.timeIntervalSince(oldest))) ago" }
        } else if let oldest {
            s += "; all verified at rest, the least recently verified one \(DurationFormat.age(now.timeIntervalSince(oldest))) ago (\(formatSeconds(oldest)) UTC)"
        }
        if quarantined > 0 { s += "; \(quarantined) chunk(s) in quarantine" }
        if legacyRevisions > 0 { s += "; \(legacyRevisions) revisions written by backy 2.x (`backy upgrade` converts them)" }
        if let stored, let disk {
            s += "; \(ByteFormat.flexible(stored)) stored, \(ByteFormat.flexible(disk)) on disk for the whole job"
        }
        return s
    }

    static func formatSeconds(_ d: Date) -> String { Timestamp.formatSeconds(d) }


    /// One revision as a JSON object (`status --json`, `backup --json`).
    public static func jsonObject(_ r: Revision, flags: Flags = Flags()) -> [String: Any] {
        var stats: [String: Any] = [:]
        for (k, v) in r.stats.pairs { stats[k] = jsonValue(v) }
        return [
            "uuid": r.id,
            "timestamp": Timestamp.iso8601(r.timestamp),
            "parent": r.parent as Any? ?? NSNull(),
            "tags": r.sortedTags,
            "trust": flags.damage[r.id] != nil ? "damaged" : r.trust.rawValue,
            "damage": flags.damage[r.id] as Any? ?? NSNull(),
            "future_dated": flags.future.contains(r.id),
            "complete": r.isComplete,
            "backend_type": r.backend.name,
            "duration": r.duration as Any? ?? NSNull(),
            "bytes_written": r.bytesWritten,
            "bytes_stored": r.bytesStored as Any? ?? NSNull(),
            "stats": stats,
        ]
    }

    /// The store summary as a JSON object.
    public static func jsonObject(_ u: StoreUsage) -> [String: Any] {
        [
            "chunks": u.chunks,
            "legacy_chunks": u.legacyChunks,
            "stored_bytes": u.storedBytes,
            "disk_bytes": u.diskBytes,
            "quarantined_chunks": u.quarantined,
            "verification": [
                "never_verified_chunks": u.neverVerified,
                "verified_percent": (u.verifiedPercent * 100).rounded() / 100,
                "oldest": u.oldestVerified.map { Timestamp.iso8601($0) } as Any? ?? NSNull(),
                "newest": u.newestVerified.map { Timestamp.iso8601($0) } as Any? ?? NSNull(),
            ] as [String: Any],
        ]
    }

    /// `status --json`: the job, its revisions (oldest first) and its store.
    public static func json(job: String, _ revs: [Revision], flags: Flags = Flags(), store: StoreUsage) throws -> String {
        let doc: [String: Any] = [
            "job": job,
            "revisions": revs.map { jsonObject($0, flags: flags) },
            "store": jsonObject(store),
        ]
        return try render(doc)
    }

    /// Pretty, sorted JSON text.
    public static func render(_ object: Any) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    static func jsonValue(_ v: YAMLValue) -> Any {
        switch v {
        case .null: return NSNull()
        case .bool(let b): return b
        case .int(let i): return i
        case .double(let d): return d.isFinite ? d as Any : String(d)
        case .string(let s): return s
        case .list(let l): return l.map(jsonValue)
        case .map(let m):
            var d: [String: Any] = [:]
            for (k, x) in m.pairs { d[k] = jsonValue(x) }
            return d
        }
    }
}
