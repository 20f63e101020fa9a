// CephRBDSource: source type `ceph-rbd` ({type: ceph-rbd, pool: P, image: I,
// full-always: false}) through librbd, no rbd CLI and no kernel mapping.
//
// Backup: snapshot `backy-<revision>`; if the parent revision is complete,
// trusted, native and its snapshot `backy-<parent>` still exists, ask
// rbd_diff_iterate2 (whole objects) what changed since that snapshot, read
// only those chunks (in parallel) and take every other chunk id over from
// the parent's map; otherwise a full backup that reads only the allocated
// extents (a diff since creation). Chunks whose extents no longer exist
// become zero chunks; growth and shrinkage resize the map.
//
// Verification: reads a random 1 % (at least one) of the new revision's
// chunks from the snapshot and compares them with the store, within a time
// budget; and reads a few chunks the diff called unchanged and compares them
// with the parent: if they differ the diff lied, and the new revision is
// distrusted so that the next backup reads everything.
//
// Clean-up (after success and after failure): every `backy-*` snapshot
// except the one of the revision to keep is removed; other snapshots are
// never touched.
import ChunkStore
import Foundation
import Logging
import Presentation
import Rados
#if canImport(Glibc)
import Glibc
#endif

public final class CephRBDSource: BackupSource {
    public let typeName: String
    public let pool: String
    public let image: String
    public let fullAlways: Bool
    public let access: CephAccess
    /// Seconds the post-backup verification may take (`verify-budget`).
    public let verifyBudget: Double
    /// Chunks the diff called unchanged that verification compares with the
    /// parent (`diff-guard-chunks`).
    public let guardChunks: Int
    /// Config of type `flyingcircus`: handled as ceph-rbd without Consul.
    public let flyingCircus: Bool

    public static let snapshotPrefix = "backy-"
    public static let defaultVerifyBudget: Double = 300
    public static let defaultGuardChunks = 16
    /// Chunks read ahead of the workers (SourceOptions.rbdReadAhead), so
    /// reads overlap with hashing and compressing.
    public let readAhead: Int
    /// How librados finds the cluster.
    let environment: CephEnvironment
    /// Stats key recording that a revision's diff missed changes.
    public static let diffMismatchKey = "diff_mismatches"

    /// A differential backup builds on the parent's map.
    public var usesParentMap: Bool { !fullAlways }

    // State of one run.
    private var cluster: RadosCluster?
    private var io: RadosIoctx?
    private var snap: RBDImage?
    /// Indices of chunks taken over from the parent without reading.
    private var adopted: [Int] = []
    private var adoptedSet = Set<Int>()

    public var spec: String { "\(pool)/\(image)" }

    public init(config: YAMLMap, configPath: String, options: SourceOptions = SourceOptions(), flyingCircus: Bool = false) throws {
        readAhead = options.rbdReadAhead
        environment = options.ceph
        let type = flyingCircus ? "flyingcircus" : "ceph-rbd"
        func str(_ key: String, required: Bool) throws -> String? {
            guard let v = config[key] else {
                if required { throw BackyError(.usage, "\(configPath): source type \(type) needs '\(key)'") }
                return nil
            }
            guard let s = v.string ?? v.int.map({ String($0) }), !s.isEmpty else {
                throw BackyError(.usage, "\(configPath): '\(key)' must be a non-empty string")
            }
            return s
        }
        typeName = type
        self.flyingCircus = flyingCircus
        pool = try str("pool", required: true)!
        image = try str("image", required: true)!
        if let v = config["full-always"], !v.isNull {
            guard let b = v.bool else { throw BackyError(.usage, "\(configPath): 'full-always' must be true or false") }
            fullAlways = b
        } else {
            fullAlways = false
        }
        access = CephAccess(confPath: try str("ceph-conf", required: false),
                            clientID: try str("client-id", required: false))
        if let v = config["verify-budget"], !v.isNull {
            guard let d = v.double ?? v.int.map(Double.init), d >= 0 else {
                throw BackyError(.usage, "\(configPath): 'verify-budget' must be a number of seconds")
            }
            verifyBudget = d
        } else {
            verifyBudget = CephRBDSource.defaultVerifyBudget
        }
        if let v = config["diff-guard-chunks"], !v.isNull {
            guard let n = v.int, n >= 0 else {
                throw BackyError(.usage, "\(configPath): 'diff-guard-chunks' must be a whole number")
            }
            guardChunks = Int(n)
        } else {
            guardChunks = CephRBDSource.defaultGuardChunks
        }
    }

    public static func snapshotName(_ revision: String) -> String { snapshotPrefix + revision }

    // MARK: connection

    private func connect() throws -> RadosIoctx {
        if let io { return io }
        let c: RadosCluster, i: RadosIoctx
        do {
            c = try RadosCluster(access: access, environment: environment)
            i = try c.ioctx(pool: pool)
        } catch let e as RadosError {
            throw e.asSourceError
        }
        cluster = c
        io = i
        return i
    }

    private func disconnect() {
        snap?.close()
        snap = nil
        io = nil
        cluster = nil
    }

    public func ready() throws {
        let io = try connect()
        do {
            let img = try RBDImage(io: io, name: image, readOnly: true)
            img.close()
        } catch let e as BackyError where e.kind == .notFound {
            throw BackyError(.notFound, "Source is not ready: RBD image \(spec) does not exist")
        } catch let e as BackyError {
            throw BackyError(e.kind, "Source is not ready: \(e.message)")
        }
    }

    // MARK: backup

    /// Which chunks of an image of `size` bytes the diff extents touch:
    /// `read` chunks hold data (or lost only part of it), `zeroed` ones lie
    /// wholly in extents that no longer exist.
    static func classify(_ extents: [RBDExtent], size: UInt64, chunkSize: Int) -> (read: [Bool], zeroed: [Bool]) {
        let n = ChunkMap.chunkCount(size, chunkSize)
        var read = [Bool](repeating: false, count: n)
        var zeroBytes = [UInt64](repeating: 0, count: n)
        let cs = UInt64(chunkSize)
        for e in extents {
            guard e.length > 0, e.offset < size else { continue }
            let end = e.length >= size - e.offset ? size : e.offset + e.length  // no overflow
            let first = Int(e.offset / cs), last = Int((end - 1) / cs)
            for i in first...last {
                if e.exists {
                    read[i] = true
                } else {
                    let s = max(e.offset, UInt64(i) * cs), t = min(end, UInt64(i + 1) * cs)
                    zeroBytes[i] += t - s
                }
            }
        }
        var zeroed = [Bool](repeating: false, count: n)
        for i in 0..<n where !read[i] && zeroBytes[i] > 0 {
            let len = min(cs, size - UInt64(i) * cs)
            if zeroBytes[i] >= len { zeroed[i] = true } else { read[i] = true }
        }
        return (read, zeroed)
    }

    public func backup(_ ctx: BackupContext) throws -> ChunkMap {
        let log = ctx.log
        if flyingCircus {
            log.info("Source type flyingcircus: Consul-triggered filesystem freezing is not supported; taking a crash-consistent snapshot directly, as ceph-rbd")
        }
        let io = try connect()
        let head: RBDImage
        do {
            head = try RBDImage(io: io, name: image)
        } catch let e as BackyError where e.kind == .notFound {
            throw BackyError(.notFound, "RBD image \(spec) does not exist")
        }
        defer { head.close() }

        // Full or differential?
        var base: (rev: Revision, map: ChunkMap)?
        if fullAlways {
            log.info("Full backup: per configuration")
        } else if let parent = ctx.parent {
            if parent.trust == .distrusted {
                log.info("Full backup: distrusted parent")
            } else if (parent.stats[CephRBDSource.diffMismatchKey]?.int ?? 0) > 0 {
                // Distrusted by its own verification (and perhaps verified
                // at rest since, which says nothing about the source).
                log.info("Full backup: distrusted parent (the diff it was made from missed changes)")
            } else if !(try head.snapshotExists(CephRBDSource.snapshotName(parent.id))) {
                log.info("Full backup: could not find snapshot for previous revision")
            } else if parent.backend != .native {
                log.info("Full backup: previous revision was written by backy 2.4 (\(parent.backend.name))")
            } else {
                // Pin the parent's map before taking over its chunks, so a
                // concurrent purge keeps them even if the parent goes.
                do {
                    let pinned = try ctx.session.pinMap(.map(parent.id), revision: parent.id)
                    let m = try ctx.job.backend.readMap(pinned)
                    if m.chunkSize == ChunkMap.defaultChunkSize {
                        base = (parent, m)
                    } else {
                        log.info("Full backup: previous revision uses \(m.chunkSize)-byte chunks")
                    }
                } catch {
                    log.warning("Full backup: cannot use the previous revision's map: \(error)")
                }
            }
        } else {
            log.info("Full backup: no previous revision")
        }

        let snapName = CephRBDSource.snapshotName(ctx.revision.id)
        try head.createSnapshot(snapName)
        let snap = try RBDImage(io: io, name: image, snapshot: snapName, readOnly: true)
        self.snap = snap
        let size = try snap.size()
        let cs = ChunkMap.defaultChunkSize

        let started = Date()
        let from = base.map { CephRBDSource.snapshotName($0.rev.id) }
        log.info(base == nil ? "Performing full backup" : "Performing differential backup")
        let extents = try snap.diff(from: from, length: size, wholeObject: true, includeParent: true)
        let (readMask, zeroMask) = CephRBDSource.classify(extents, size: size, chunkSize: cs)

        var map = ChunkMap(zeroImageOfSize: size, chunkSize: cs)
        let n = map.chunks.count
        var indices: [Int] = []
        adopted = []
        if let base {
            let old = base.map
            let keep = min(n, old.chunks.count)
            for i in 0..<keep { map.chunks[i] = old.chunks[i] }
            for i in 0..<n {
                if readMask[i] {
                    indices.append(i)
                } else if zeroMask[i] {
                    map.chunks[i] = .zero
                } else if i < old.chunks.count {
                    if old.length(of: i) != map.length(of: i) {
                        // The partial last chunk changed size: its id changes.
                        indices.append(i)
                    } else {
                        adopted.append(i)
                    }
                }
                // Chunks beyond the old size the diff does not name are zero.
            }
            let sizeNote = old.imageSize == size ? "" : ", image size \(old.imageSize) → \(size) bytes"
            log.info("Diff since \(from!): \(extents.count) extents; \(indices.count) of \(n) chunks to read, \(zeroMask.filter { $0 }.count) zeroed, \(adopted.count) unchanged\(sizeNote)")
        } else {
            for i in 0..<n where readMask[i] { indices.append(i) }
            log.info("Allocated extents of \(snap.spec): \(extents.count); \(indices.count) of \(n) chunks to read, \(n - indices.count) not allocated")
        }
        // The adopted chunks are protected by the pinned parent map.
        adoptedSet = Set(adopted)

        let m = map
        let ahead = RBDReadAhead(image: snap, extents: indices.map { (m.offset(of: $0), m.length(of: $0)) },
                                 window: readAhead, bufferSize: cs)
        defer { ahead.close() }
        var position = [Int: Int](minimumCapacity: indices.count)
        for (k, i) in indices.enumerated() { position[i] = k }
        let positions = position
        try ctx.writer.store(indices, of: &map) { i, ws in
            let buf = UnsafeMutableRawBufferPointer(rebasing: ws.data[0..<m.length(of: i)])
            guard let n = try ahead.take(positions[i]!, into: buf) else {
                throw BackyError(.other, "read-ahead of \(snap.spec) stopped")
            }
            return ChunkWriter.Block(length: n)
        }
        let secs = Date().timeIntervalSince(started)
        log.info("Integration finished.")
        let bytes = indices.reduce(Int64(0)) { $0 + Int64(map.length(of: $1)) }
        log.info("Read \(indices.count) chunks (\(ByteFormat.flexible(bytes))) from \(snap.spec) in \(String(format: "%.2f", secs)) s")
        ctx.extraStats["backup_type"] = .string(base == nil ? "full" : "differential")
        ctx.extraStats["chunks_adopted"] = .int(Int64(adopted.count))
        return map
    }

    // MARK: verification

    /// Compares a random 1 % of the new revision's chunks (at least one)
    /// with the store, and a few chunks the diff called unchanged with the
    /// parent (BackupCheck), within `verify-budget`.
    public func verify(_ ctx: BackupContext, map: ChunkMap) throws {
        let log = ctx.log
        guard let snap else { throw BackyError(.other, "verify called before backup") }
        let size = try snap.size()
        if size != map.imageSize {
            throw BackyError(.verification, "snapshot \(snap.spec) has \(size) bytes, the backup \(map.imageSize)")
        }
        log.info("Performing partial verification")
        let n = map.chunks.count
        var rng = SystemRandomNumberGenerator()
        // Chunks the diff called unchanged, compared with the parent (their
        // ids in the new map are the parent's).
        let guardSample = Array(adopted.shuffled(using: &rng).prefix(guardChunks))
        // 1 % of all chunks, at least one, compared with the store.
        let k = n == 0 ? 0 : max(1, n / 100)
        let randomSample = k >= n ? Array(0..<n) : Array(Self.sample(k, of: n, using: &rng)).sorted()
        let check = BackupCheck(writer: ctx.writer, map: map)
        let plan = check.plan(guardSample.map { BackupCheck.Item(index: $0, against: .id(map.chunks[$0])) }
            + randomSample.map { BackupCheck.Item(index: $0, against: .storedChunk) })
        let adoptedSet = self.adoptedSet
        let started = Date()
        let ahead = RBDReadAhead(image: snap, extents: plan.map { (map.offset(of: $0.index), map.length(of: $0.index)) },
                                 window: readAhead, bufferSize: map.chunkSize)
        defer { ahead.close() }
        let results = try check.run(plan, deadline: Date().addingTimeInterval(verifyBudget), onDeadline: { ahead.stop() }) { k, i, ws, _ in
            let buf = UnsafeMutableRawBufferPointer(rebasing: ws.data[0..<map.length(of: i)])
            guard let got = try ahead.take(k, into: buf) else { return .unavailable }
            return .bytes(length: got, fast: nil)
        }
        var checkedRandom = 0, checkedGuard = 0, readBack = 0, skipped = 0
        var mismatches: [String] = [], lies: [String] = []
        // A chunk both samples caught is one missed change, counted once.
        var lied = Set<Int>()
        for r in results {
            let i = r.item.index
            let off = map.offset(of: i)
            let isGuard: Bool
            if case .id = r.item.against { isGuard = true } else { isGuard = false }
            var problem: String?
            switch r.outcome {
            case .skipped:
                skipped += 1
                continue
            case .mismatch(.shortRead(let got, let len)):
                mismatches.append("offset \(off): short read from \(snap.spec) (\(got) of \(len) bytes)")
                continue
            case .match:
                break
            case .mismatch(.differs(let a, let e)) where isGuard:
                if lied.insert(i).inserted {
                    lies.append("offset \(off): the snapshot hashes to \(a.hex), the parent has \(e.hex)")
                }
            case .mismatch(.notZero):
                problem = "offset \(off): the snapshot has data, the backup a zero chunk"
            case .mismatch(.differs(let a, let e)):
                problem = "offset \(off): the snapshot hashes to \(a.hex), the backup has \(e.hex)"
            case .mismatch(.storedDiffers(let e)):
                problem = "offset \(off): the snapshot hashes to \(e.hex), the backup has \(e.hex)"
            case .mismatch(.readBackFailed(let e, let error)):
                problem = "offset \(off): stored chunk \(e.hex) does not read back: \(error)"
            case .mismatch(.hole(let e)):
                problem = "offset \(off): the snapshot has a hole, the backup has \(e.hex)"
            }
            if isGuard {
                checkedGuard += 1
                continue
            }
            checkedRandom += 1
            if r.readBack, !r.readBackFailed { readBack += 1 }
            if let problem {
                // A chunk taken over from the parent that differs from the
                // snapshot: the diff missed a change.
                if !adoptedSet.contains(i) {
                    mismatches.append(problem)
                } else if lied.insert(i).inserted {
                    lies.append(problem)
                }
            }
        }
        let secs = Date().timeIntervalSince(started)
        if skipped > 0 {
            log.warning("Stopping verification after \(String(format: "%.0f", verifyBudget)) s (verify-budget): checked \(checkedRandom + checkedGuard) of \(plan.count) sampled chunks")
        }
        if !mismatches.isEmpty {
            for line in mismatches.prefix(20) { log.error("Verification mismatch at \(line)") }
            throw BackyError(.verification, "verification failed: \(mismatches.count) of \(checkedRandom) sampled chunks differ from snapshot \(snap.spec) (first: \(mismatches[0]))")
        }
        if !lies.isEmpty {
            for line in lies.prefix(20) { log.error("Diff guard mismatch at \(line)") }
            let why = "rbd diff called \(lies.count) changed chunk(s) unchanged (first at \(lies[0])); the next backup will read everything"
            log.error("The Ceph diff since the previous snapshot missed changes - distrusting the new revision")
            ctx.distrustReason = why
            ctx.extraStats[CephRBDSource.diffMismatchKey] = .int(Int64(lies.count))
        }
        log.info("Partial verification: \(checkedRandom) random chunks compared with the store (\(readBack) read back), \(checkedGuard) unchanged chunks compared with the parent, \(String(format: "%.2f", secs)) s")
        ctx.extraStats["ceph-verification"] = .string("partial")
        ctx.extraStats["verified_chunks"] = .int(Int64(checkedRandom))
        ctx.extraStats["verified_read_back"] = .int(Int64(readBack))
        ctx.extraStats["diff_guard_chunks"] = .int(Int64(checkedGuard))
    }

    /// `k` distinct random numbers in 0..<n (k much smaller than n).
    static func sample(_ k: Int, of n: Int, using rng: inout SystemRandomNumberGenerator) -> Set<Int> {
        var s = Set<Int>(minimumCapacity: k)
        while s.count < k { s.insert(Int.random(in: 0..<n, using: &rng)) }
        return s
    }

    // MARK: clean-up

    public func finish(_ ctx: BackupContext?, succeeded: Bool, keep: Revision?) {
        let log = ctx?.log ?? Logger(label: "backy")
        snap?.close()
        snap = nil
        defer { disconnect() }
        // With full-always no snapshot is needed for the next run.
        let keepName = fullAlways ? nil : keep.map { CephRBDSource.snapshotName($0.id) }
        do {
            let io = try connect()
            let head = try RBDImage(io: io, name: image)
            defer { head.close() }
            for s in try head.snapshots() where s.name.hasPrefix(CephRBDSource.snapshotPrefix) && s.name != keepName {
                log.info("Removing old snapshot \(s.name)")
                do {
                    try head.removeSnapshot(s.name)
                } catch {
                    log.warning("Could not remove snapshot \(spec)@\(s.name): \(error); the next backup tries again")
                }
            }
        } catch {
            log.warning("Snapshot clean-up of \(spec) failed: \(error); the next backup tries again")
        }
    }
}
