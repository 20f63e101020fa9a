// RadosChunks: the chunk objects of a RADOS job, `chunk/<64 hex>` in the
// job's namespace, holding the same bytes as a chunk file (header and
// payload, docs/store-format.md "Chunks"). A chunk is written with one
// asynchronous write_full, which the OSD applies whole or not at all: a
// reader never sees half a chunk, and a writer killed mid-put leaves either
// nothing or the whole chunk — so there are no temp objects to clean up.
// Commit waits for the write's acknowledgement (which RADOS gives once the
// write is durable on every replica); makeDurable has nothing left to do.
// A RADOS job holds no backy 2.4 chunks (`backy copy` converts them).
import Foundation
import Rados
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: only `let`s (an ioctx, which librados lets threads share, and a `Locked` gate).
public final class RadosChunks: ChunkObjects, @unchecked Sendable {
    let io: RadosIoctx
    /// The exclusive gate hold of a running purge batch (the backend's).
    let purgeGate: Locked<RadosLease?>

    init(io: RadosIoctx, purgeGate: Locked<RadosLease?>) {
        self.io = io
        self.purgeGate = purgeGate
    }

    public var location: String { "rados:\(io.location)" }

    public func location(of chunk: StoredChunk) -> String {
        "rados:\(io.location)/" + objectName(chunk)
    }

    func objectName(_ chunk: StoredChunk) -> String {
        switch chunk {
        case .native(let id): return RadosNames.chunk(id)
        case .legacy(let h): return "legacy-chunk/" + h
        }
    }

    /// Nothing to create: objects need no directories.
    public func prepare() throws {}

    public func exists(_ id: ChunkID) -> Bool {
        if id.isZero { return true }
        // An error is "not there": the writer then writes it again (and
        // that write reports the cluster's trouble).
        return ((try? io.stat(RadosNames.chunk(id))) ?? nil) != nil
    }

    /// Whether chunk `id` is stored; a failure to tell (a timeout, a
    /// cluster that does not answer) is an error, not "absent" (a writer
    /// pinning and testing must fail, not go on writing).
    func existsOrThrow(_ id: ChunkID) throws -> Bool {
        if id.isZero { return true }
        return try RadosBackend.wrap { try io.stat(RadosNames.chunk(id)) } != nil
    }

    public func size(of chunk: StoredChunk) -> Int64? {
        // Only native chunks live in RADOS (backy 2.4's never get there).
        guard case .native(let id) = chunk, !id.isZero else { return nil }
        guard let st = (try? io.stat(RadosNames.chunk(id))) ?? nil else { return nil }
        return Int64(st.size)
    }

    /// Pipelined stats (status and the metrics measure every chunk).
    public func sizes(of chunks: [StoredChunk]) -> [Int64?] {
        let names = chunks.map { c -> String in
            if case .native(let id) = c, !id.isZero { return RadosNames.chunk(id) }
            return ""
        }
        let wanted = names.indices.filter { !names[$0].isEmpty }
        guard let stats = try? io.stats(wanted.map { names[$0] }) else { return chunks.map { size(of: $0) } }
        var out = [Int64?](repeating: nil, count: chunks.count)
        for (k, i) in wanted.enumerated() { out[i] = stats[k].map { Int64($0.size) } }
        return out
    }

    public func open(_ chunk: StoredChunk) throws -> StoredObject {
        let name = chunk.name
        guard case .native = chunk else { throw ChunkReadError(name: name, fault: .missing) }
        let o: RadosStoredObject?
        do {
            o = try RadosStoredObject.open(io, objectName(chunk))
        } catch {
            throw ChunkReadError(name: name, fault: .io("\(error)"))
        }
        guard let o else { throw ChunkReadError(name: name, fault: .missing) }
        return o
    }

    /// A write_full in flight.
    // @unchecked Sendable: only `let`s; its completion is waited for by the one committer that takes it.
    final class PendingWrite: PendingPut, @unchecked Sendable {
        let id: ChunkID
        let size: Int
        let completion: RadosCompletion

        init(id: ChunkID, size: Int, completion: RadosCompletion) {
            self.id = id
            self.size = size
            self.completion = completion
        }

        func commit() throws {
            do {
                try completion.check()
            } catch {
                throw BackyError(.io, "\(error)")
            }
            CrashPoints.reached(.chunkRenamed)
        }

        /// The write cannot be called back; it is whole or absent, and
        /// purge removes an unreferenced whole chunk like any other.
        func abandon() { completion.wait() }
    }

    /// Starts the write_full of `chunk/<id>` (header and payload are copied
    /// into the operation at once, so the caller's buffers are free again).
    public func beginPut(_ id: ChunkID, _ chunk: EncodedChunk, session: String) throws -> PendingPut {
        precondition(!id.isZero, "zero chunks have no object")
        let op = RadosWriteOp()
        // One buffer list: the OSD gets header and payload as one write.
        var bytes = [UInt8](repeating: 0, count: chunk.size)
        bytes.withUnsafeMutableBytes { b in
            b.baseAddress!.copyMemory(from: chunk.header.baseAddress!, byteCount: chunk.header.count)
            if chunk.payload.count > 0 {
                (b.baseAddress! + chunk.header.count).copyMemory(from: chunk.payload.baseAddress!, byteCount: chunk.payload.count)
            }
        }
        op.writeFull(bytes)
        do {
            let c = try io.aioOperate(op, on: RadosNames.chunk(id), flags: .fullTry, what: "cannot write \(io.describe(RadosNames.chunk(id)))")
            return PendingWrite(id: id, size: chunk.size, completion: c)
        } catch {
            throw BackyError(.io, "\(error)")
        }
    }

    /// Acknowledged writes are durable already.
    public func makeDurable(_ ids: [ChunkID]) throws {}

    /// A namespace is the job's own by construction: nothing can redirect
    /// an object name elsewhere.
    public func checkOwnership() throws {}

    /// Every `chunk/<64 hex>` object. Other names are not chunks.
    public func list(strict: Bool, _ body: (StoredChunk) throws -> Void) throws {
        try RadosBackend.wrap {
            try io.forEachObject { name in
                if let id = RadosNames.chunkID(name) { try body(.native(id)) }
                return true
            }
        }
    }

    public func makeRemover() throws -> ChunkRemover { Remover(io: io, purgeGate: purgeGate) }

    /// Removes chunk objects (a stat for the size, then the remove; a chunk
    /// gone meanwhile is nil), pipelined, each started only while purge
    /// certainly holds the gate exclusively: a purge that stalled past the
    /// gate's duration deletes nothing more (sessions may have pinned
    /// meanwhile).
    final class Remover: ChunkRemover {
        let io: RadosIoctx
        let purgeGate: Locked<RadosLease?>
        init(io: RadosIoctx, purgeGate: Locked<RadosLease?>) {
            self.io = io
            self.purgeGate = purgeGate
        }

        func remove(_ chunk: StoredChunk) throws -> Int64? {
            try remove([chunk])[0]
        }

        /// Up to `window` stats, then removes, in flight at once; the gate
        /// is checked before each one is started.
        static let window = 32

        func remove(_ chunks: [StoredChunk]) throws -> [Int64?] {
            var sizes = [Int64?](repeating: nil, count: chunks.count)
            try RadosBackend.wrap {
                var pending: [(Int, RadosStatCompletion)] = []
                var removing: [(Int, RadosCompletion)] = []
                func finishRemove() throws {
                    let (i, c) = removing.removeFirst()
                    let r = c.wait()
                    if r == -ENOENT { sizes[i] = nil } else if r < 0 { try c.check() }
                }
                func finishStat() throws {
                    let (i, st) = pending.removeFirst()
                    guard let got = try st.result() else { return }
                    sizes[i] = Int64(got.size)
                    guard case .native(let id) = chunks[i] else { return }
                    try checkGate()
                    removing.append((i, try io.aioRemove(RadosNames.chunk(id))))
                    if removing.count >= Remover.window { try finishRemove() }
                }
                for (i, c) in chunks.enumerated() {
                    guard case .native(let id) = c else { continue }
                    try checkGate()
                    pending.append((i, try io.aioStat(RadosNames.chunk(id))))
                    if pending.count >= Remover.window { try finishStat() }
                }
                while !pending.isEmpty { try finishStat() }
                while !removing.isEmpty { try finishRemove() }
            }
            return sizes
        }

        /// At least one operation timeout of the exclusive gate hold must be
        /// left before a deletion starts.
        private func checkGate() throws {
            guard let gate = purgeGate.get, gate.secondsLeft > gate.duration / 3 else {
                throw BackyError(.io, "purge no longer holds the gate of \(io.location) for certain (the process stalled or the cluster is slow); stopping before the next deletion")
            }
        }
    }

    /// write_full leaves nothing unfinished.
    public func removeUnfinished(isLive: (String) -> Bool) throws -> Int { 0 }
}
