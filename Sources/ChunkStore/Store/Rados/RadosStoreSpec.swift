// RadosStoreSpec: where a RADOS job's store is — `rados:POOL[/NAMESPACE]`
// as `init --store` and a job's local `config` (`store:`) name it — and the
// names of the objects in that namespace (docs/rados.md, "Objects"). Only
// well-formed revision ids, chunk ids and session ids ever become object
// names.
import Foundation

public struct RadosStoreSpec: Sendable, Equatable, CustomStringConvertible {
    public static let scheme = "rados:"
    public var pool: String
    public var namespace: String

    public init(pool: String, namespace: String) {
        self.pool = pool
        self.namespace = namespace
    }

    /// Parses `rados:POOL[/NAMESPACE]`; the namespace defaults to
    /// `defaultNamespace` (the job directory's base name).
    public static func parse(_ s: String, defaultNamespace: String) throws -> RadosStoreSpec {
        guard s.hasPrefix(scheme) else {
            throw BackyError(.usage, "unknown store '\(s)' (expected rados:POOL[/NAMESPACE])")
        }
        let rest = s.dropFirst(scheme.count)
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let pool = parts[0]
        let ns = parts.count > 1 ? parts[1] : defaultNamespace
        for (what, v) in [("pool", pool), ("namespace", ns)] {
            guard !v.isEmpty, v.utf8.count <= 200,
                  v.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: "/") }) else {
                throw BackyError(.usage, "store '\(s)': the \(what) must be 1-200 printable ASCII characters without '/' or spaces")
            }
        }
        return RadosStoreSpec(pool: pool, namespace: ns)
    }

    public static func isRados(_ s: String) -> Bool { s.hasPrefix(scheme) }

    public var description: String { "rados:\(pool)/\(namespace)" }
}

/// Object names in a job's namespace.
enum RadosNames {
    /// Created once by `init`: says the namespace holds a backy job.
    static let marker = "backy.store"
    static let markerContent = "backy RADOS store v1\n"
    static let config = "config"
    static let verified = "verified"
    static let drill = "drill.json"
    static let chunkPrefix = "chunk/"
    static let revisionPrefix = "rev/"
    static let mapPrefix = "map/"
    static let sessionPrefix = "session/"
    static let quarantinePrefix = "quarantine/"
    static let damagePrefix = "damage/"
    static let lockPrefix = "lock/"
    /// The gate's lock object (sessions shared, purge exclusive).
    static let gate = "lock/gate"

    static func chunk(_ id: ChunkID) -> String { chunkPrefix + id.hex }
    static func revision(_ id: String) -> String { revisionPrefix + id }
    static func map(_ id: String) -> String { mapPrefix + id }
    /// A session's pin list (and its liveness lock).
    static func session(_ sid: String) -> String { sessionPrefix + sid }
    /// A map a session pinned: `session/<sid>.<rev>.map`.
    static func pinnedMap(_ name: String) -> String { sessionPrefix + name }
    static func lock(_ name: JobLockName) -> String { lockPrefix + String(name.rawValue.dropFirst()) }

    /// The chunk id of `chunk/<64 hex>`; nil for any other name.
    static func chunkID(_ name: String) -> ChunkID? {
        guard name.hasPrefix(chunkPrefix) else { return nil }
        let hex = name.dropFirst(chunkPrefix.count)
        guard hex.utf8.count == 64, let id = ChunkID(hex: hex), id.hex == hex else { return nil }
        return id
    }
}
