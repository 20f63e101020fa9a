// Verifier: `backy verify`. Reads chunks back (decompress + SHA-256) in
// parallel: every distinct chunk of a revision (a chunk read back earlier in
// the same run counts: the run is the verification window), or, in sampling
// mode, the least recently verified chunks of the whole job until a share or
// a time budget is used. Bad chunks go to quarantine and every revision that
// references them is distrusted. Acts only on a store that is provably the
// job's own (no symlinks in chunks/).
import ChunkStore
import Foundation
import Logging
import Presentation

public final class Verifier {
    public struct BadChunk: Sendable {
        public let name: String
        public let fault: ChunkFault
        public let revisions: [String]
    }

    public struct Result: Sendable {
        public var checked = 0
        public var bytes: Int64 = 0
        public var bad: [BadChunk] = []
        public var seconds: Double = 0
        public var stoppedByBudget = false
    }

    public let job: Job
    public let log: Logger
    public let threads: Int
    /// Chunks read back and found good by this verifier (this run): a
    /// later revision of the same run need not read them again.
    private var goodThisRun = Set<String>()
    /// Chunks found bad by this run.
    private var badThisRun = Set<String>()

    /// Where the bytes read back are reported (nil: nowhere).
    public var progress: ProgressMeter?

    public init(job: Job, log: Logger = Logger(label: "backy"), threads: Int = Parallel.cores) {
        self.job = job
        self.log = log
        self.threads = threads
    }

    /// Checks `ids` (in order) until done or `deadline`; returns the faults.
    func check(_ ids: [ChunkID], deadline: Date?) throws -> (ok: [ChunkID], bad: [(ChunkID, ChunkFault)], bytes: Int64, stopped: Bool) {
        let ok = Locked<[ChunkID]>([])
        let bad = Locked<[(ChunkID, ChunkFault)]>([])
        let bytes = Locked<Int64>(0)
        let stopped = Locked(false)
        let store = job.store
        let progress = self.progress
        progress?.start("verify", total: Int64(ids.count) * Int64(ChunkMap.defaultChunkSize))
        defer { progress?.finish() }
        try Parallel.forEach(count: ids.count, threads: threads, setup: { _ in ChunkWorkspace() }) { ws, i in
            defer { progress?.add(Int64(ChunkMap.defaultChunkSize)) }
            if let deadline, Date() >= deadline {
                stopped.with { $0 = true }
                return
            }
            let id = ids[i]
            do {
                let n = try store.read(id, workspace: ws)
                bytes.with { $0 += Int64(n) }
                ok.with { $0.append(id) }
            } catch let e as ChunkReadError {
                bad.with { $0.append((id, e.fault)) }
            }
        }
        return (ok.get, bad.get, bytes.get, stopped.get)
    }

    /// Quarantines bad chunks and distrusts every revision referencing them.
    /// `faults`: chunk name, the stored chunk (if any), the fault.
    func isolate(_ faults: [(name: String, stored: StoredChunk?, fault: ChunkFault)]) throws -> [BadChunk] {
        guard !faults.isEmpty else { return [] }
        let refs = try References(job: job).revisionsReferencing(Set(faults.map { $0.name }))
        var out: [BadChunk] = []
        let gate = job.backend.makeGate()
        try gate.exclusive {
            for f in faults {
                let revs = refs[f.name] ?? []
                let r = try Quarantine.isolate(job: job, name: f.name, stored: f.stored,
                                               hash: f.name.utf8.count == 32 ? "murmurhash3" : "sha256",
                                               fault: f.fault, revisions: revs)
                log.error("Bad chunk \(f.name): \(f.fault); moved to \(r.file ?? "(no file)"), referenced by \(revs.count) revision(s)")
                out.append(BadChunk(name: f.name, fault: f.fault, revisions: revs))
            }
        }
        let affected = Set(out.flatMap { $0.revisions })
        try job.updateRevisions(affected) { rev in
            if rev.trust != .distrusted {
                log.warning("Distrusting revision \(rev.id): it references a bad chunk")
                rev.trust = .distrusted
            }
        }
        return out
    }

    /// Verifies one revision (as backy 2.4 does, without deleting anything):
    /// every distinct chunk is read back, decompressed and hashed, except
    /// those this run already read back (when it verifies several
    /// revisions); only then is the revision marked verified. (backy 2.4
    /// skipped chunks of revisions marked verified at any time in the past:
    /// a chunk damaged since then went unnoticed.) The caller holds
    /// `.purge` exclusively.
    public func verify(revision spec: Revision) throws -> Result {
        let start = Date()
        try job.store.chunks.checkOwnership()
        let session = try job.backend.openSession()
        defer { session.close() }
        let all = try job.scan()
        guard let rev = all.first(where: { $0.id == spec.id }), rev.isComplete else {
            throw BackyError(.notFound, "revision \(spec.id) is not a complete revision")
        }
        log.info("Verifying revision \(rev.id) ...")
        let image = try job.openPinnedImage(rev, session: session)
        // One chunk index per distinct stored chunk (all of them for cowfile).
        var first: [String: Int] = [:]
        var indices: [Int] = []
        var zero = 0, earlier = 0, earlierBad = 0
        var missingEntries: [(name: String, stored: StoredChunk?, fault: ChunkFault)] = []
        for i in 0..<image.chunkCount {
            if image.isZero(i) { zero += 1; continue }
            if case .unmapped = image.chunkKey(i) {
                // A backy 2.4 map without an entry for this chunk.
                missingEntries.append((image.chunkName(i), nil, .missing))
                continue
            }
            let name = image.chunkName(i)
            if first[name] != nil { continue }
            first[name] = i
            if goodThisRun.contains(name) { earlier += 1; continue }
            if badThisRun.contains(name) { earlierBad += 1; continue }
            indices.append(i)
        }
        let faults = Locked<[(name: String, stored: StoredChunk?, fault: ChunkFault)]>([])
        let okNative = Locked<[ChunkID]>([])
        let bytes = Locked<Int64>(0)
        let progress = self.progress
        progress?.start("verify \(rev.id)", total: indices.reduce(Int64(0)) { $0 + Int64(image.length(of: $1)) })
        defer { progress?.finish() }
        try Parallel.forEach(count: indices.count, threads: threads, setup: { _ in ChunkWorkspace() }) { ws, k in
            let i = indices[k]
            defer { progress?.add(Int64(image.length(of: i))) }
            do {
                let n = try image.read(i, into: ws.data, workspace: ws)
                bytes.with { $0 += Int64(n) }
                if case .sha256(let id) = image.chunkKey(i) { okNative.with { $0.append(id) } }
            } catch let e as ChunkReadError {
                faults.with { $0.append((image.chunkName(i), image.chunkKey(i).stored, e.fault)) }
            }
        }
        var result = Result()
        result.checked = indices.count
        result.bytes = bytes.get
        let found = faults.get
        result.bad = try isolate(found)
        if !missingEntries.isEmpty {
            // Nothing to quarantine: the revision itself is damaged.
            try job.updateRevisions([rev.id]) { $0.trust = .distrusted }
            for m in missingEntries.prefix(5) { log.error("Revision \(rev.id): its map has no entry for \(m.name)") }
            result.bad += missingEntries.map { BadChunk(name: $0.name, fault: $0.fault, revisions: [rev.id]) }
        }
        for f in found { badThisRun.insert(f.name) }
        for i in indices where !badThisRun.contains(image.chunkName(i)) { goodThisRun.insert(image.chunkName(i)) }
        var index = try VerifiedIndex.load(job)
        index.record(okNative.get, at: Date())
        try index.save(job)
        var what = "\(indices.count) chunks read back (\(ByteFormat.flexible(bytes.get)))"
        if earlier > 0 { what += ", \(earlier) skipped: read back and found good earlier in this run" }
        if zero > 0 { what += ", \(zero) zero chunks (no file to read)" }
        if earlierBad > 0 {
            log.error("Revision \(rev.id) uses \(earlierBad) chunk(s) this run found bad: it stays distrusted.")
        } else if result.bad.isEmpty, let why = rev.stats["distrust_reason"]?.string {
            // Distrusted because its source lied (a Ceph diff that missed a
            // change): intact chunks do not make it match the source.
            log.warning("No problems found in the chunks of \(rev.id) (\(what)), but it stays distrusted: \(why)")
        } else if result.bad.isEmpty {
            try job.updateRevisions([rev.id]) { $0.trust = .verified }
            log.info("No problems found - marking as verified. (\(what))")
        } else {
            log.error("Found \(result.bad.count) bad chunk(s) - revision \(rev.id) and every revision sharing them are distrusted.")
        }
        result.seconds = Date().timeIntervalSince(start)
        return result
    }

    /// Verifies the least recently verified chunks of the job (never verified
    /// first, then oldest; more referenced first on ties) until `percent` of
    /// them or `budget` seconds are used. The caller holds `.purge`.
    public func sample(percent: Double, budget: Double?) throws -> Result {
        let start = Date()
        try job.store.chunks.checkOwnership()
        let session = try job.backend.openSession()
        defer { session.close() }
        var refCount: [ChunkID: Int] = [:]
        for rev in try job.scan() where rev.isComplete && rev.backend == .native {
            do {
                _ = try session.pinMap(.map(rev.id), revision: rev.id)
            } catch let e as BackyError where e.kind == .notFound {
                continue
            }
            for c in try job.loadMap(rev).distinctChunks { refCount[c, default: 0] += 1 }
        }
        var index = try VerifiedIndex.load(job)
        let all = refCount.keys.sorted {
            let a = index.lastVerifiedSeconds($0), b = index.lastVerifiedSeconds($1)
            if a != b { return a < b }
            let ra = refCount[$0]!, rb = refCount[$1]!
            if ra != rb { return ra > rb }
            return $0 < $1
        }
        let want = min(all.count, Int((Double(all.count) * percent / 100).rounded(.up)))
        let ids = Array(all.prefix(want))
        log.info("Sampling \(ids.count) of \(all.count) chunks (\(percent) %, least recently verified first\(budget.map { ", budget \($0) s" } ?? ""))")
        let deadline = budget.map { start.addingTimeInterval($0) }
        let (ok, faults, bytes, stopped) = try check(ids, deadline: deadline)
        var result = Result()
        result.checked = ok.count + faults.count
        result.bytes = bytes
        result.stoppedByBudget = stopped
        result.bad = try isolate(faults.map { (name: $0.0.hex, stored: StoredChunk.native($0.0) as StoredChunk?, fault: $0.1) })
        index.record(ok, at: Date())
        index.prune(keeping: Set(all))
        try index.save(job)
        result.seconds = Date().timeIntervalSince(start)
        log.info("Sampled \(result.checked) chunks (\(ByteFormat.flexible(bytes))) in \(String(format: "%.1f", result.seconds)) s\(stopped ? ", stopped by the time budget" : ""); \(result.bad.count) bad")
        return result
    }

    /// How many chunk files the store holds, how many of them were never
    /// verified at rest, and when the least recently verified one was. Lists
    /// the store instead of reading every revision's map, so `status` stays
    /// cheap for jobs with many large revisions (garbage not yet purged is
    /// counted too).
    public static func coverage(job: Job) throws -> (chunks: Int, neverVerified: Int, oldest: Date?) {
        let ids = try job.store.allChunks()
        let index = try VerifiedIndex.load(job)
        var never = 0
        var oldest: UInt32 = .max
        for id in ids {
            let t = index.lastVerifiedSeconds(id)
            if t == 0 { never += 1 } else { oldest = min(oldest, t) }
        }
        return (ids.count, never, oldest == .max ? nil : Date(timeIntervalSince1970: Double(oldest)))
    }
}
