// StoreSwitch: `backy set-store STORE` — points a job's local `config` at
// another store that holds a copy of its history (made by `backy copy`):
// `rados:POOL[/NS]`, or the job directory itself (a RADOS job comes home
// to a directory job, after `backy copy --to DIR` into its own directory).
// Refuses unless the target holds every complete revision the job has
// (`--force` switches anyway), and while a backup of the job runs (its
// `.backup` lock). The old store is left as it is: nothing is removed.
import ChunkStore
import Foundation
import Logging
import Presentation
import Rados

public enum StoreSwitch {
    public struct Result: Sendable {
        public var from: String
        public var to: String
        /// Complete revisions of the job the target holds.
        public var revisionsThere: Int
        /// Complete revisions of the job the target lacks (only with force).
        public var missing: [String]
        public var unchanged: Bool
    }

    public static func run(job: Job, to given: String, force: Bool, log: Logger) throws -> Result {
        let spec = try Copier.TargetSpec(given, job: job)
        let current = Copier.currentStore(of: job)
        if spec == current {
            return Result(from: current.description, to: spec.description, revisionsThere: try job.history().count, missing: [], unchanged: true)
        }
        if case .directory(let d) = spec, d != job.path {
            let what = DirectoryBackend.isJobDirectory(d) ? "another job directory (use it as -b)" : "not the job directory"
            throw BackyError(.usage, "a directory store is the job directory itself (\(job.path)); \(d) is \(what); to move a RADOS job back to its directory: `backy copy --to \(job.path)`, then `backy set-store \(job.path)`")
        }
        let lock = job.lock(.backup)
        guard try lock.tryLock(.exclusive) else {
            throw BackyError(.locked, "a backup of \(job.path) is running (\(lock.path) is locked); switch its store when it is done")
        }
        defer { lock.unlock() }
        let target = try Copier.openTarget(spec, for: job, create: false, force: force)
        let there = try Copier.completeRevisions(of: target)
        let mine = try job.history()
        let missing = mine.filter { there[$0.id] == nil }.map(\.id)
        if !missing.isEmpty && !force {
            throw BackyError(.usage, "\(spec) lacks \(Counted.text(missing.count, "revision")) of the job's \(mine.count) (first: \(missing[0])); copy them first (backy copy --to \(spec)) or use --force")
        }
        let cfg = job.configPath
        let bytes: [UInt8]
        let mode: mode_t
        switch spec {
        case .rados(let r):
            // Keep how this server reaches the cluster.
            var m = YAMLMap([("store", .string(r.description))])
            for k in ["ceph-conf", "client-id", "lock-duration"] {
                if let v = job.localConfig[k], !v.isNull { m[k] = v }
            }
            bytes = Array((YAML.flow(.map(m)) + "\n").utf8)
            mode = 0o640
        case .directory:
            bytes = Array((YAML.flow(.map(try job.sourceConfig())) + "\n").utf8)
            mode = 0o440
        }
        // The old config may be read-only (0440): replace it, never edit it.
        try Posix.writeFileAtomically(cfg, bytes, mode: mode)
        log.info("Switched the store of \(job.path) from \(current) to \(spec) (\(there.count) revisions there, \(missing.count) of the job's missing)")
        return Result(from: current.description, to: spec.description, revisionsThere: mine.count - missing.count, missing: missing, unchanged: false)
    }
}
