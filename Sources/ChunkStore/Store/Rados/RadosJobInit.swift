// RadosJobInit: `backy init --store rados:POOL[/NAMESPACE]` — creates a job
// whose history lives in RADOS, or attaches a second job directory to the
// job a namespace already holds (refusing a different source unless
// forced). The store's `config` object holds the source; the local
// directory gets a `config` that names the store.
import Foundation
import Logging
import Rados

extension Job {
    /// What `initialize(path:source:store:)` did.
    public enum StoreInit: Sendable, Equatable {
        case created
        case attached
        /// Attached with --force, replacing the store's source.
        case attachedReplacingSource(String)
    }

    /// Creates (or attaches to) the RADOS job in `store` and writes the
    /// local `config` of the job directory at `path`.
    public static func initialize(path: String, source: YAMLMap, store spec: RadosStoreSpec, force: Bool,
                                  groupAccess: Bool = false, logger: Logger = Logger(label: "backy")) throws -> (Job, StoreInit) {
        try refuseExistingConfig(path: path)
        let local = StoreFactory.LocalStore(spec: spec, access: CephAccess(), lockDuration: RadosBackend.defaultLockDuration)
        let backend = try StoreFactory.open(local)
        let outcome = try claim(backend, source: source, force: force)
        try createDirectory(path, groupAccess: groupAccess)
        try Posix.writeFileAtomically(path + "/config", Array((YAML.flow(.map(YAMLMap([("store", .string(spec.description))]))) + "\n").utf8), mode: 0o640)
        return (try Job(path: path, logger: logger), outcome)
    }

    /// Makes `backend` a job with source `source`: creates its `config`
    /// object exclusively (of two claims at once one creates, the other
    /// attaches), or attaches to the job it holds — refusing another source
    /// unless `force` (which makes `source` the job's) — then writes the
    /// marker. Used by `init --store` and `copy --to rados:…`.
    public static func claim(_ backend: RadosBackend, source: YAMLMap, force: Bool) throws -> StoreInit {
        let spec = backend.spec
        let sourceBytes = Array((YAML.flow(.map(source)) + "\n").utf8)
        var outcome = StoreInit.created
        let created = try RadosBackend.wrap { try backend.io.createExclusive(RadosNames.config, sourceBytes) }
        if !created {
            let loc = backend.location(of: .sourceConfig)
            let existing = try Job.parseConfig(try backend.read(.sourceConfig, limit: Posix.Limit.metadata), source: loc)
            let have = existing["type"] == nil ? (existing["source"]?.map ?? existing) : existing
            let differs = source.pairs.contains { k, v in have[k] != v }
            if differs {
                let was = YAML.flow(.map(have))
                guard force else {
                    throw BackyError(.usage, "\(spec) already holds a job with another source (\(was)); refusing to attach with \(YAML.flow(.map(source))) (use --force to attach and make it the job's source)")
                }
                try backend.write(.sourceConfig, sourceBytes, durable: true)
                outcome = .attachedReplacingSource(was)
            } else {
                outcome = .attached
            }
        }
        try backend.prepare()
        return outcome
    }

    /// The scheduler's form of init for a job with `store:` in backy.conf
    /// (which is authoritative, as for a directory job's config): creates
    /// the job in the store if needed, makes the store's source `source`,
    /// and writes the local `config` naming the store. Refuses a directory
    /// that holds a directory job's history (it would be hidden).
    /// `lockDuration`: written to the local config as `lock-duration`.
    public static func prepareRadosJob(path: String, source: YAMLMap, store spec: RadosStoreSpec, lockDuration: Double? = nil) throws {
        var m = YAMLMap([("store", .string(spec.description))])
        if let d = lockDuration { m["lock-duration"] = .int(Int64(d.rounded(.up))) }
        let local = Array((YAML.flow(.map(m)) + "\n").utf8)
        let cfg = path + "/config"
        let old = try? Posix.readFile(cfg, limit: Posix.Limit.metadata)
        // A directory switched to this store by `backy set-store` may still
        // hold its old history (the operator removes it); it stays hidden.
        if Posix.isDirectory(path + "/chunks"), old != local {
            throw BackyError(.usage, "\(path) holds the history of a directory job; it cannot become a job in \(spec) (remove `store` for this job)")
        }
        let backend = try StoreFactory.open(StoreFactory.LocalStore(spec: spec, access: CephAccess(), lockDuration: RadosBackend.defaultLockDuration))
        let sourceBytes = Array((YAML.flow(.map(source)) + "\n").utf8)
        let created = try RadosBackend.wrap { try backend.io.createExclusive(RadosNames.config, sourceBytes) }
        if !created, (try? backend.read(.sourceConfig, limit: Posix.Limit.metadata)) != sourceBytes {
            try backend.write(.sourceConfig, sourceBytes, durable: true)
        }
        try backend.prepare()
        if old == local { return }
        try Posix.writeFileAtomically(cfg, local, mode: 0o640, durable: false)
    }
}
