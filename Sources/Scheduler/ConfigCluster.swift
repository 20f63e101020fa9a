// ConfigCluster.swift — the configuration keys of several schedulers sharing
// RADOS jobs (README.md, "Running several backup servers"): in `global`,
// `lease` (how long a job's lease outlives a scheduler that stopped renewing
// it; an interval string, default 60s, 3s to 1h) and `node-name` (this
// scheduler's name among them, default the host name; `backy scheduler
// --node NAME` overrides it); per job, `nodes: [a, b]` (the only nodes that
// may run the job; default every node).

import ChunkStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The cluster keys of `global`.
public struct ClusterSettings: Equatable, Sendable {
    /// Seconds a job's lease outlives a holder that stopped renewing it.
    public var lease = ClusterSettings.defaultLease
    /// This scheduler's node name (validated, never empty).
    public var nodeName = ClusterSettings.hostName

    public static let defaultLease = 60
    static let keys: Set<String> = ["lease", "node-name"]

    public init() {}

    /// The host name (uname), the default node name.
    public static var hostName: String {
        var u = utsname()
        uname(&u)
        let name = withUnsafeBytes(of: &u.nodename) { b in String(decoding: b.prefix { $0 != 0 }, as: UTF8.self) }
        return invalidNodeName(name) == nil ? name : "localhost"
    }

    /// Why `name` cannot be a node name (1-64 characters of letters,
    /// digits, '.', '-', '_'); nil if it can.
    public static func invalidNodeName(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= 64 else { return "a node name has 1 to 64 characters" }
        let ok = name.utf8.allSatisfy { c in
            (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 46 || c == 45 || c == 95
        }
        return ok ? nil : "a node name consists of letters, digits, '.', '-' and '_'"
    }
}

extension SchedulerConfig {
    /// Reads `lease` and `node-name` of `global`; errors are recorded in `p`.
    static func parseCluster(_ gm: YAMLMap, problems p: Problems) -> ClusterSettings {
        var c = ClusterSettings()
        p.attempt {
            guard let v = gm["lease"] else { return }
            let seconds: Int?
            if case .int(let n) = v { seconds = Int(exactly: n) } else { seconds = v.string.flatMap { try? parseDuration($0) } }
            guard let s = seconds, s >= 3, s <= 3600 else {
                throw p.error(gm, "lease", "expected an interval from 3s to 1h (e.g. 60s), found \(show(v))", prefix: "global")
            }
            c.lease = s
        }
        p.attempt {
            guard let v = gm["node-name"] else { return }
            guard let s = v.string, v.map == nil else { throw p.error(gm, "node-name", "expected a name, found \(show(v))", prefix: "global") }
            if let why = ClusterSettings.invalidNodeName(s) { throw p.error(gm, "node-name", "\(why), found \(show(v))", prefix: "global") }
            c.nodeName = s
        }
        return c
    }

    /// A job's `nodes` (nil: every node).
    static func parseNodes(_ job: YAMLMap, key: String, problems p: Problems) throws -> [String]? {
        guard let v = job["nodes"], !v.isNull else { return nil }
        let names: [String]
        if let l = v.list {
            names = l.compactMap { $0.map == nil ? $0.string : nil }
            guard names.count == l.count else { throw p.error(job, "nodes", "expected a list of node names, found \(show(v))", prefix: key) }
        } else if let s = v.string, v.map == nil {
            names = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        } else {
            throw p.error(job, "nodes", "expected a list of node names such as [a, b], found \(show(v))", prefix: key)
        }
        guard !names.isEmpty else { throw p.error(job, "nodes", "expected at least one node name", prefix: key) }
        for n in names {
            if let why = ClusterSettings.invalidNodeName(n) { throw p.error(job, "nodes", "\(why), found \(show(.string(n)))", prefix: key) }
        }
        return names
    }
}

extension JobDefinition {
    /// Whether node `node` may run this job.
    public func runs(on node: String) -> Bool { nodes?.contains(node) ?? true }
}
