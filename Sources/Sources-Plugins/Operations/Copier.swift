// Copier: `backy copy --to STORE [-r SPEC]` — copies a job's complete
// revisions (all, or the one SPEC names) with their chunks into another
// store: a RADOS namespace (`rados:POOL[/NS]`) or a job directory. Ids,
// timestamps, tags, trust, parents and stats are carried over unchanged (the
// `.rev` is written as it is). Every chunk it writes is read back from the
// target and its SHA-256 checked before the revision's map is written; the
// chunk's stored bytes (header and payload) are copied as they are, after
// the source's copy was decoded and its hash checked.
//
// Order in the target, per revision (that of a backup, docs/store-format.md
// "Order of writes in a backup"): chunks (pinned in a target session first,
// so a purge of the target beside the copy keeps them), durable, then the
// map, then the complete `.rev` in one atomic write. So a copy killed
// anywhere leaves only complete revisions in the target (plus unreferenced
// chunks, which purge removes, or a map without `.rev`, which the rerun
// rewrites), and a rerun copies what is missing: revisions the target holds
// complete are skipped (the second run copies nothing). The source is read
// through a session of its own (pinned maps), so a purge of the source
// beside the copy is safe too. backy 2.4 revisions (chunked, cowfile) are
// refused before anything is written: `backy upgrade` converts them first.
import ChunkStore
import Foundation
import Logging
import Presentation
import Rados

public final class Copier {
    public let job: Job
    public let target: StoreBackend
    public let log: Logger
    public let threads: Int
    /// Called with a line for the operator (stdout in the CLI).
    public var say: (String) -> Void = { _ in }
    public var progress: ProgressMeter?

    public struct Result: Sendable {
        public var copied: [String] = []
        public var present = 0
        public var chunksWritten = 0
        public var chunksPresent = 0
        public var bytesWritten: Int64 = 0
    }

    public init(job: Job, target: StoreBackend, log: Logger = Logger(label: "backy"), options: DataPathOptions = DataPathOptions()) {
        self.job = job
        self.target = target
        self.log = log
        // I/O bound (a write acknowledged, then read back): more workers
        // than cores keep a remote store busy.
        threads = max(4, options.threads)
    }

    // MARK: the target

    /// Where `spec` names a store: `rados:POOL[/NS]` (namespace default:
    /// the job's name) or a directory path.
    public enum TargetSpec: Equatable, CustomStringConvertible {
        case rados(RadosStoreSpec)
        case directory(String)

        public init(_ s: String, job: Job) throws {
            if RadosStoreSpec.isRados(s) {
                self = .rados(try RadosStoreSpec.parse(s, defaultNamespace: job.name))
            } else {
                guard !s.isEmpty else { throw BackyError(.usage, "empty store name (expected rados:POOL[/NAMESPACE] or a directory)") }
                self = .directory(Posix.canonicalPath(s))
            }
        }

        public var description: String {
            switch self {
            case .rados(let r): return r.description
            case .directory(let d): return d
            }
        }
    }

    /// The store `job` uses now, as a TargetSpec.
    public static func currentStore(of job: Job) -> TargetSpec {
        if let r = job.backend as? RadosBackend { return .rados(r.spec) }
        return .directory(job.path)
    }

    /// The RADOS access of the job's cluster (its local `ceph-conf`,
    /// `client-id`) and its `lock-duration`; the defaults for a directory
    /// job.
    static func access(of job: Job) -> (CephAccess, Double) {
        let local = (try? StoreFactory.radosStore(config: job.localConfig, configPath: job.configPath)) ?? nil
        return (local?.access ?? CephAccess(), local?.lockDuration ?? RadosBackend.defaultLockDuration)
    }

    /// Opens (and, for `copy`, creates or claims) the store `spec` names
    /// as the target of `job`'s copy. Refuses the job's own store, a
    /// directory that is another RADOS job's local directory, and a store
    /// whose job has another source (unless `force`).
    public static func openTarget(_ spec: TargetSpec, for job: Job, create: Bool, force: Bool) throws -> StoreBackend {
        if spec == currentStore(of: job) {
            throw BackyError(.usage, "\(spec) is the job's own store")
        }
        let source = try job.sourceConfig()
        switch spec {
        case .rados(let r):
            // The job's cluster access and lock duration (a killed copy's
            // locks lapse as the job's own do).
            let (access, duration) = access(of: job)
            let backend = try StoreFactory.open(StoreFactory.LocalStore(spec: r, access: access, lockDuration: duration))
            if create {
                _ = try Job.claim(backend, source: source, force: force)
            } else if try !backend.isInitialized() {
                throw BackyError(.notFound, "\(r) holds no backy job (copy the job there first: backy copy --to \(r))")
            }
            return backend
        case .directory(let d):
            let cfg = d + "/config"
            let own = d == job.path
            if !own {
                try checkDirectoryTarget(d, of: job)
            }
            if !own, Posix.linkStatus(cfg) != nil {
                let local = try Job.parseConfig(try Posix.readFile(cfg, limit: Posix.Limit.metadata), source: cfg)
                if let r = try StoreFactory.radosStore(config: local, configPath: cfg) {
                    throw BackyError(.usage, "\(d) is the local directory of a job in \(r.spec); name that store instead")
                }
                let have = local["type"] == nil ? (local["source"]?.map ?? local) : local
                if source.pairs.contains(where: { k, v in have[k] != v }) {
                    guard force else {
                        throw BackyError(.usage, "\(d) holds a job with another source (\(YAML.flow(.map(have)))); refusing to copy \(YAML.flow(.map(source))) into it (use --force to copy anyway and make it that job's source)")
                    }
                    if create {
                        try FileManager.default.removeItem(atPath: cfg)
                        try Job.writeConfig(path: cfg, source: source)
                    }
                }
            } else if !own {
                guard create else { throw BackyError(.notFound, "\(d) is not a backy job directory (it has no config file)") }
                try Job.createDirectory(d, groupAccess: false)
                try Job.writeConfig(path: cfg, source: source)
            }
            guard Posix.isDirectory(d) else { throw BackyError(.notFound, "job directory \(d) does not exist") }
            let backend = DirectoryBackend(jobPath: d)
            if create { try backend.prepare() }
            return backend
        }
    }

    /// Refuses a directory target inside the job's directory or any backy
    /// job directory, one that holds the job's directory, and an existing
    /// directory with files that is not a backy job directory.
    static func checkDirectoryTarget(_ d: String, of job: Job) throws {
        if let j = DirectoryBackend.jobDirectory(containing: d, own: job.path) {
            throw BackyError(.usage, "\(d) is inside the \(j.isOwn ? "" : "backy ")job directory \(j.path); a copy goes to a directory of its own")
        }
        if job.path.hasPrefix(d == "/" ? "/" : d + "/") {
            throw BackyError(.usage, "\(d) holds the job directory \(job.path); a copy goes to a directory of its own")
        }
        if Posix.linkStatus(d + "/config") == nil, Posix.isDirectory(d),
           let names = try? Posix.listDirectory(d), !names.isEmpty {
            throw BackyError(.usage, "\(d) is not a backy job directory and is not empty (\(names.count == 1 ? "1 entry" : "\(names.count) entries")); copy to a new or empty directory, or to a job directory")
        }
    }

    /// The complete revisions of a store, by id (unreadable metadata is
    /// not a revision, nor is one whose map is missing or damaged: a copy
    /// writes its map and metadata again).
    public static func completeRevisions(of store: StoreBackend) throws -> [String: Revision] {
        var out: [String: Revision] = [:]
        for id in try store.listRevisions().ids {
            guard let bytes = try? store.read(.revision(id), limit: Posix.Limit.metadata),
                  let text = String(validating: bytes, as: UTF8.self),
                  let rev = try? Revision.parse(text, path: store.location(of: .revision(id))),
                  rev.id == id, rev.isComplete else { continue }
            if rev.backend == .native, (try? store.readMapHeader(.map(id))) == nil { continue }
            out[id] = rev
        }
        return out
    }

    // MARK: copying

    /// The complete revisions `spec` selects (all by default), oldest
    /// first; refuses backy 2.x revisions (before any target is touched).
    public static func select(job: Job, spec: String?) throws -> [Revision] {
        let selected: [Revision]
        if let spec {
            selected = [try job.findComplete(spec)]
        } else {
            selected = try job.history()
        }
        if let legacy = selected.first(where: { $0.backend != .native }) {
            let n = selected.filter { $0.backend != .native }.count
            throw BackyError(.usage, "revision \(legacy.id)\(n > 1 ? " (and \(n - 1) more)" : "") was written by backy 2.x (\(legacy.backend.name)); copy moves native revisions only: run `backy upgrade` first")
        }
        return selected
    }

    /// Copies `selected` (from `select`), oldest first, skipping the
    /// revisions the target holds complete.
    public func run(_ selected: [Revision]) throws -> Result {
        let lock = target.lock(.backup)
        guard try lock.tryLock(.exclusive) else {
            throw BackyError(.locked, "a backup or copy into \(target.location) is running (\(lock.path) is locked)")
        }
        defer { lock.unlock() }
        let there = try Copier.completeRevisions(of: target)
        var result = Result()
        let todo = selected.filter { there[$0.id] == nil }
        result.present = selected.count - todo.count
        say("Copying \(Counted.text(todo.count, "revision")) to \(target.location) (\(result.present) there already)")
        guard !todo.isEmpty else { return result }
        let sourceSession = try job.backend.openSession()
        defer { sourceSession.close() }
        let targetSession = try target.openSession()
        defer { targetSession.close() }
        // Chunks this run pinned in the target and found or put there.
        let handled = Locked(Set<ChunkID>())
        for rev in todo {
            let started = Date()
            let pinned = try sourceSession.pinMap(.map(rev.id), revision: rev.id)
            let map = try job.backend.readMap(pinned)
            let ids = Array(Set(map.chunks.filter { !$0.isZero })).sorted { $0.hex < $1.hex }
            let before = result
            try copyChunks(ids, session: targetSession, handled: handled, result: &result)
            try target.write(.map(rev.id), map.encode(), durable: true)
            try target.write(.revision(rev.id), Array(rev.yaml().utf8), durable: true)
            target.revisionCompleted(rev)
            result.copied.append(rev.id)
            let line = "Copied revision \(rev.id) from \(Timestamp.formatSeconds(rev.timestamp)) UTC [\(rev.sortedTags.joined(separator: ","))]: \(Counted.text(result.chunksWritten - before.chunksWritten, "chunk")) written (\(ByteFormat.flexible(result.bytesWritten - before.bytesWritten))), \(result.chunksPresent - before.chunksPresent) there already; \(String(format: "%.1f", Date().timeIntervalSince(started))) s"
            log.info("\(line)")
            say(line)
        }
        return result
    }

    /// Puts each chunk the target lacks (pinned first), reads it back and
    /// checks its hash; makes them durable.
    func copyChunks(_ ids: [ChunkID], session: StoreSession, handled: Locked<Set<ChunkID>>, result: inout Result) throws {
        let source = job.store
        let targetStore = ChunkStore(chunks: target.chunks)
        let target = self.target
        let counts = Locked((written: 0, present: 0, bytes: Int64(0), ids: [ChunkID]()))
        let progress = self.progress
        progress?.start("copy", total: Int64(ids.count) * Int64(ChunkWorkspace.chunkSize))
        defer { progress?.finish() }
        try Parallel.forEach(count: ids.count, threads: threads,
                             setup: { _ in (ChunkWorkspace(), target.makeGate()) }) { w, k in
            let (ws, gate) = w
            let id = ids[k]
            defer { progress?.add(Int64(ChunkWorkspace.chunkSize)) }
            if handled.get.contains(id) { return }
            if try session.pinThenTest(id, in: target.chunks, gate: gate) {
                handled.with { _ = $0.insert(id) }
                counts.with { $0.present += 1 }
                return
            }
            // Decode the source's copy (hash checked), then store its bytes
            // as they were: the header the decoder left in ws.file, the
            // payload there (zstd) or in ws.data (raw).
            let n = try source.read(id, into: ws.data, workspace: ws, checkHash: true)
            guard case .success(let h) = ChunkHeader.decode(UnsafeRawBufferPointer(rebasing: ws.file[0..<ChunkHeader.size])) else {
                throw BackyError(.corrupt, "chunk \(id.hex): its header changed while it was read")
            }
            let pl = Int(h.payloadLength)
            let payload = h.codec == .raw
                ? UnsafeRawBufferPointer(rebasing: ws.data[0..<n])
                : UnsafeRawBufferPointer(rebasing: ws.file[ChunkHeader.size..<(ChunkHeader.size + pl)])
            let put = try target.chunks.beginPut(id, EncodedChunk(header: UnsafeRawBufferPointer(rebasing: ws.file[0..<ChunkHeader.size]), payload: payload),
                                                 session: session.id)
            do { try put.commit() } catch { put.abandon(); throw error }
            do {
                _ = try targetStore.read(id, into: ws.spare, workspace: ws, checkHash: true)
            } catch {
                throw BackyError(.verification, "copy: chunk \(id.hex) does not read back from \(target.location): \(error)")
            }
            handled.with { _ = $0.insert(id) }
            counts.with { $0.written += 1; $0.bytes += Int64(put.size); $0.ids.append(id) }
        }
        let c = counts.get
        try targetStore.makeDurable(c.ids)
        result.chunksWritten += c.written
        result.chunksPresent += c.present
        result.bytesWritten += c.bytes
    }
}
