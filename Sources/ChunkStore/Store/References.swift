// References: which chunks the job's revisions and running sessions refer
// to — native chunk ids from binary maps and pin lists, and backy 2.4 chunk
// hashes from JSON maps — read through the storage seam. Reads every map
// once and re-reads only maps and pin bytes that are new, so purge can
// recompute the set before each batch.
//
// Purge deletes what this set does not name, so it fails rather than
// guesses: a map, pin list or revision it cannot read is an error (nothing
// is deleted), never "absent". Only an object that is really gone is
// skipped, and every complete revision must have had its map read.
import Foundation

public final class References {
    public struct Set2: Sendable {
        public var native = Set<ChunkID>()
        public var legacy = Set<String>()
    }

    public let job: Job
    private var backend: StoreBackend { job.backend }
    private enum Parsed { case native([ChunkID]), legacy([String]), image }
    /// Maps read so far (revision maps, pinned maps, backy 2.4 data).
    private var maps: [StoreObjectName: (version: ObjectVersion, parsed: Parsed)] = [:]
    /// Revision metadata parsed so far (nil: not a readable revision).
    private var revs: [String: (version: ObjectVersion, rev: Revision?)] = [:]
    /// Pin lists read so far: session → (bytes consumed, ids).
    private var pins: [String: (offset: Int, ids: [ChunkID])] = [:]

    /// Test hook: runs after the store was listed, before maps and pins are
    /// read (the window in which sessions may finish).
    var afterListing: (() -> Void)?

    public init(job: Job) {
        self.job = job
    }

    /// Why purge must not delete anything now.
    static func refuse(_ why: String) -> BackyError {
        BackyError(.corrupt, "\(why); purge removes nothing until this is repaired")
    }

    /// The object's version: nil if it is really gone; throws (refusing)
    /// for anything else that keeps it from being read.
    private func versionOrGone(_ o: StoreObjectName) throws -> (version: ObjectVersion, isPlain: Bool)? {
        do {
            return try backend.version(of: o)
        } catch let e as BackyError {
            throw References.refuse(e.message)
        }
    }

    /// Opens an object; nil if it went away.
    private func openOrGone(_ o: StoreObjectName) throws -> StoredObject? {
        do {
            return try backend.open(o)
        } catch let e as BackyError {
            throw References.refuse(e.message)
        }
    }

    /// Parses one map (native or backy 2.4 JSON); `imageOK`: an object that
    /// is neither may be a backy 2.x raw image. nil if it went away.
    private func parse(_ o: StoreObjectName, imageOK: Bool) throws -> Parsed? {
        guard let object = try openOrGone(o) else { return nil }
        let loc = backend.location(of: o)
        var first = [UInt8](repeating: 0, count: 8)
        let n: Int
        do {
            n = try first.withUnsafeMutableBytes { try object.read(into: $0, at: 0) }
        } catch let e as BackyError {
            throw References.refuse(e.message)
        }
        first.removeLast(8 - n)
        do {
            if first.count >= 2 && first[0] == UInt8(ascii: "{") && first[1] == UInt8(ascii: "\"") {
                return .legacy(Array(try backend.readLegacyMap(o).distinctChunks))
            }
            if first == ChunkMap.magic {
                return .native(try ChunkMap.read(from: object, location: loc).chunks)
            }
        } catch let e as BackyError where e.isNoSuchFile {
            return nil
        } catch {
            throw References.refuse("\(error)")
        }
        if imageOK { return .image }
        throw References.refuse("\(loc): neither a chunk map nor a backy 2.4 map")
    }

    /// Re-scans maps and pins; returns the referenced chunks. Throws if a
    /// map, a pin list or a complete revision cannot be read: then nothing
    /// may be deleted.
    public func refresh() throws -> Set2 {
        var mapObjects: [StoreObjectName] = []
        var revIDs: [String] = []
        var legacyData: [StoreObjectName] = []
        var pinSessions: [String] = []
        // Listed in this order: maps and revisions first, pins after
        // (docs/store-format.md, "Purge and concurrent sessions").
        for o in try backend.listReferenceObjects() {
            switch o {
            case .map, .pinnedMap: mapObjects.append(o)
            case .revision(let id): revIDs.append(id)
            case .legacyData: legacyData.append(o)
            case .pins(let s): pinSessions.append(s)
            default: break
            }
        }
        let legacySet = Set(legacyData)
        afterListing?()
        var seen = Set<StoreObjectName>()
        let ordered = mapObjects + legacyData.sorted { backend.location(of: $0) < backend.location(of: $1) }
        for o in ordered {
            guard let st = try versionOrGone(o) else { continue }
            guard st.isPlain else {
                // <id> of a native revision means nothing; of a backy 2.4
                // revision it must be its map (checked below).
                if legacySet.contains(o) { continue }
                throw References.refuse("\(backend.location(of: o)) is not a regular file")
            }
            if let known = maps[o], known.version == st.version { seen.insert(o); continue }
            guard let parsed = try parse(o, imageOK: legacySet.contains(o)) else { continue }
            seen.insert(o)
            maps[o] = (st.version, parsed)
        }
        for o in maps.keys where !seen.contains(o) { maps[o] = nil }
        try checkRevisions(revIDs)
        var seenPins = Set<String>()
        for s in pinSessions {
            var entry = pins[s] ?? (0, [])
            let loc = backend.location(of: .pins(s))
            let object: StoredObject?
            do {
                object = try backend.open(.pins(s))
            } catch let e as BackyError {
                throw References.refuse("cannot open pin file \(loc): \(String(cString: strerror(e.errno ?? 0)))")
            }
            guard let object else { continue }  // its session ended
            seenPins.insert(s)
            if !object.isPlain || object.size > Posix.Limit.map {
                throw References.refuse("pin file \(loc) is not a regular file of at most \(Posix.Limit.map) bytes")
            }
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = try buf.withUnsafeMutableBytes { try object.read(into: $0, at: entry.offset) }
                let whole = n / 32 * 32
                if whole > 0 {
                    buf.withUnsafeBytes { b in
                        for k in stride(from: 0, to: whole, by: 32) { entry.ids.append(ChunkID(bytes: b.baseAddress! + k)) }
                    }
                    entry.offset += whole
                }
                if n < buf.count { break }
            }
            pins[s] = entry
        }
        for s in pins.keys where !seenPins.contains(s) { pins[s] = nil }
        var refs = Set2()
        for (_, m) in maps {
            switch m.parsed {
            case .native(let ids): for c in ids where !c.isZero { refs.native.insert(c) }
            case .legacy(let hs): refs.legacy.formUnion(hs)
            case .image: break
            }
        }
        for (_, e) in pins { for c in e.ids { refs.native.insert(c) } }
        return refs
    }

    /// Every complete revision must have had its map read: a revision whose
    /// map is missing or unreadable is damaged, and purge must not act as if
    /// it referenced nothing. Backups write the map before they complete the
    /// revision, removal makes the revision incomplete before it removes the
    /// map: so a complete revision read anew names a map that exists, or
    /// one that is being removed (then the revision, read again, is no
    /// longer complete).
    private func checkRevisions(_ ids: [String]) throws {
        var seenRevs = Set<String>()
        for id in ids {
            guard let st = try versionOrGone(.revision(id)) else { continue }
            seenRevs.insert(id)
            let rev: Revision?
            if let known = revs[id], known.version == st.version {
                rev = known.rev
            } else {
                do {
                    rev = try job.loadRevision(id)
                } catch let e as BackyError where e.isNoSuchFile {
                    continue
                } catch let e as BackyError where e.kind == .corrupt || e.kind == .usage {
                    // Not a revision (scan ignores it, and so does every
                    // reader); its <id>.map and <id>, if any, were read.
                    rev = nil
                }
                revs[id] = (st.version, rev)
            }
            // Metadata whose uuid is not its name is no revision (scan ignores it).
            guard let rev, rev.isComplete, rev.id == id else { continue }
            guard let need = job.pinnableMap(rev), !hasMap(need, of: rev) else { continue }
            if try settled(id, needs: need) { revs[id] = nil; continue }
            throw References.refuse("revision \(rev.id) has no readable map (\(backend.location(of: need))); repair it or remove it with `backy forget -r \(rev.id)`")
        }
        for id in revs.keys where !seenRevs.contains(id) { revs[id] = nil }
    }

    private func hasMap(_ need: StoreObjectName, of rev: Revision) -> Bool {
        switch (rev.backend, maps[need]?.parsed) {
        case (.native, .native?), (.legacyChunked, .legacy?): return true
        default: return false
        }
    }

    /// A complete revision whose map was not read when the store was
    /// listed: reads the revision and then its map again (a backup may have
    /// just completed it, a removal may be under way). True when it is no
    /// longer complete, or its map is now read.
    private func settled(_ id: String, needs need: StoreObjectName) throws -> Bool {
        for attempt in 0..<20 {
            if attempt > 0 { usleep(20_000) }
            let rev: Revision
            do { rev = try job.loadRevision(id) } catch { return true }  // gone or no longer a revision
            guard rev.isComplete else { return true }
            guard let st = try versionOrGone(need), st.isPlain else { continue }
            guard let parsed = try parse(need, imageOK: false) else { continue }
            maps[need] = (st.version, parsed)
            return hasMap(need, of: rev)
        }
        return false
    }

    /// Revision ids whose maps name each chunk (by chunk name: 64 hex for
    /// native chunks, 32 for backy 2.4's). A map that cannot be read is
    /// logged (that revision is damaged; status shows it).
    public func revisionsReferencing(_ names: Set<String>) throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        for rev in try job.scan() {
            let chunkNames: Set<String>
            do {
                switch rev.backend {
                case .native:
                    chunkNames = Set(try backend.readMap(.map(rev.id)).chunks.filter { !$0.isZero }.map(\.hex))
                case .legacyChunked:
                    chunkNames = try backend.readLegacyMap(.legacyData(rev.id)).distinctChunks
                default:
                    continue
                }
            } catch {
                if rev.isComplete { job.log.warning("Cannot tell which chunks revision \(rev.id) uses: \(error)") }
                continue
            }
            for c in chunkNames where names.contains(c) { out[c, default: []].append(rev.id) }
        }
        return out
    }
}
