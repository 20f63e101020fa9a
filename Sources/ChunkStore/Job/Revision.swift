// Revision: the metadata of one backup, `<id>.rev` (YAML, backy 2.4's field
// set: uuid, timestamp, parent, stats, tags, trust, backend_type). The
// presence of `stats.duration` marks a revision complete. Unknown keys are
// kept and written back.
import Foundation

public enum Trust: String, Sendable, CaseIterable {
    case trusted, distrusted, verified
}

/// How a revision's data is stored.
public enum BackendType: Sendable, Equatable {
    /// This project's format: binary `<id>.map`, SHA-256 named zstd chunks.
    case native
    /// backy 2.4's chunked backend: JSON map `<id>`, MurmurHash3 LZO chunks.
    case legacyChunked
    /// backy 2.x's cowfile backend: `<id>` is a raw image.
    case cowfile
    /// Something this version does not know.
    case unknown(String)

    public static let nativeName = "chunked-sha256"

    public init(name: String?) {
        switch name {
        case nil, "cowfile": self = .cowfile
        case "chunked": self = .legacyChunked
        case BackendType.nativeName: self = .native
        case let s?: self = .unknown(s)
        }
    }

    public var name: String {
        switch self {
        case .native: return BackendType.nativeName
        case .legacyChunked: return "chunked"
        case .cowfile: return "cowfile"
        case .unknown(let s): return s
        }
    }
}

public struct Revision: Sendable, Equatable {
    public var id: String
    public var timestamp: Date
    public var parent: String?
    public var stats: YAMLMap
    public var tags: Set<String>
    public var trust: Trust
    public var backend: BackendType
    /// Keys this version does not interpret, preserved on rewrite.
    public var extra: YAMLMap

    public init(id: String, timestamp: Date, parent: String?, tags: Set<String>,
                trust: Trust = .trusted, backend: BackendType = .native,
                stats: YAMLMap = YAMLMap([("bytes_written", .int(0))]), extra: YAMLMap = YAMLMap()) {
        self.id = id
        self.timestamp = timestamp
        self.parent = parent
        self.stats = stats
        self.tags = tags
        self.trust = trust
        self.backend = backend
        self.extra = extra
    }

    public var isComplete: Bool { stats["duration"] != nil }

    /// Dated more than `Job.futureTolerance` after `now` (see `Job.usable`).
    public func isFutureDated(now: Date = Date()) -> Bool {
        timestamp.timeIntervalSince(now) > Job.futureTolerance
    }
    public var duration: Double? { stats["duration"]?.double }
    public var bytesWritten: Int64 { stats["bytes_written"]?.int ?? 0 }
    /// Bytes the backup added to the store (compressed new chunks); nil for
    /// revisions that do not record it (backy 2.x, incomplete ones).
    public var bytesStored: Int64? { stats["bytes_stored"]?.int }

    public func stat(_ key: String) -> Int64? { stats[key]?.int }

    /// Tags sorted by name, for stable output.
    public var sortedTags: [String] { tags.sorted() }

    // MARK: YAML

    public func yaml() -> String {
        var m = extra
        m["uuid"] = .string(id)
        m["parent"] = parent.map { .string($0) } ?? .null
        m["stats"] = .map(stats)
        m["tags"] = .list(sortedTags.map { .string($0) })
        m["trust"] = .string(trust.rawValue)
        m["backend_type"] = .string(backend.name)
        // The timestamp must stay an unquoted YAML timestamp (backy 2.4 reads
        // it as a datetime), so it is written as raw text.
        m["timestamp"] = nil
        return YAML.emit(m, raw: ["timestamp": Timestamp.format(timestamp)])
    }

    public static func parse(_ text: String, path: String) throws -> Revision {
        let v = try YAML.parse(text, source: path)
        guard var m = v.map else { throw BackyError(.corrupt, "\(path): not a revision file (not a YAML mapping)") }
        guard let id = m["uuid"]?.string, !id.isEmpty else { throw BackyError(.corrupt, "\(path): revision has no uuid") }
        guard let tsValue = m["timestamp"] else { throw BackyError(.corrupt, "\(path): revision has no timestamp") }
        let seconds: Double
        switch tsValue {
        case .int(let i): seconds = Double(i)
        case .double(let d): seconds = d
        case .string(let s):
            guard let d = Timestamp.parse(s) else { throw BackyError(.corrupt, "\(path): bad timestamp '\(s.prefix(80))'") }
            seconds = d.timeIntervalSince1970
        default: throw BackyError(.corrupt, "\(path): bad timestamp")
        }
        guard Timestamp.isRepresentable(seconds) else {
            throw BackyError(.corrupt, "\(path): timestamp \(tsValue.string ?? "?") is outside the years 1 to 9999")
        }
        let ts = Date(timeIntervalSince1970: seconds)
        // A parent is only ever compared with ids, never made into a path.
        let parent = m["parent"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        let stats = m["stats"]?.map ?? YAMLMap([("bytes_written", .int(0))])
        var tags = Set<String>()
        switch m["tags"] {
        case .list(let l)?: for t in l { if let s = t.string { tags.insert(s) } }
        case .string(let s)?: tags.insert(s)
        default: break
        }
        let trust: Trust
        if let t = m["trust"]?.string {
            guard let tr = Trust(rawValue: t) else { throw BackyError(.corrupt, "\(path): unknown trust '\(t)'") }
            trust = tr
        } else {
            trust = .trusted
        }
        let backend = BackendType(name: m["backend_type"]?.string)
        for k in ["uuid", "timestamp", "parent", "stats", "tags", "trust", "backend_type"] { m[k] = nil }
        return Revision(id: id, timestamp: ts, parent: parent, tags: tags, trust: trust, backend: backend,
                        stats: stats, extra: m)
    }
}
