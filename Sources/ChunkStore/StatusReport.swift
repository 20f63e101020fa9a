// StatusReport: `backy status` as text (backy 2.4's table with the Trust
// column and its summary line) and as JSON.
import Foundation

public enum StatusReport {
    public static func table(_ revs: [Revision]) -> String {
        var t = TextTable(["Date (UTC)", "ID", "Size", "Durat", "Tags", "Trust"],
                          align: [.left, .left, .right, .right, .left, .left])
        var total: Int64 = 0
        for r in revs {
            total += r.bytesWritten
            let dur = r.duration.map { formatDuration($0) } ?? "0 s"
            t.add([Timestamp.formatSeconds(r.timestamp), r.id, ByteFormat.flexible(r.bytesWritten), dur,
                   r.sortedTags.joined(separator: ","), r.trust.rawValue])
        }
        return t.render() + "\n\(revs.count) revisions containing \(ByteFormat.flexible(total)) data (estimated)"
    }

    /// Seconds rounded to one decimal, as backy 2.4 prints them.
    public static func formatDuration(_ d: Double) -> String {
        String(format: "%.1f s", (d * 10).rounded() / 10)
    }

    public static func json(_ revs: [Revision]) -> String {
        var items: [[String: Any]] = []
        for r in revs {
            var stats: [String: Any] = [:]
            for (k, v) in r.stats.pairs { stats[k] = jsonValue(v) }
            items.append([
                "uuid": r.id,
                "timestamp": Timestamp.iso8601(r.timestamp),
                "parent": r.parent as Any? ?? NSNull(),
                "tags": r.sortedTags,
                "trust": r.trust.rawValue,
                "complete": r.isComplete,
                "backend_type": r.backend.name,
                "duration": r.duration as Any? ?? NSNull(),
                "bytes_written": r.bytesWritten,
                "stats": stats,
            ])
        }
        let data = try! JSONSerialization.data(withJSONObject: items, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    static func jsonValue(_ v: YAMLValue) -> Any {
        switch v {
        case .null: return NSNull()
        case .bool(let b): return b
        case .int(let i): return i
        case .double(let d): return d
        case .string(let s): return s
        case .list(let l): return l.map(jsonValue)
        case .map(let m):
            var d: [String: Any] = [:]
            for (k, x) in m.pairs { d[k] = jsonValue(x) }
            return d
        }
    }
}
