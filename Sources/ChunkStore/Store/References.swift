// References: which chunks the job's revisions and running sessions refer
// to — native chunk ids from binary maps and pin files, and backy 2.4 chunk
// hashes from JSON maps. Reads every map once and re-reads only maps and pin
// bytes that are new, so purge can recompute the set before each batch.
//
// Purge deletes what this set does not name, so it fails rather than
// guesses: a map, pin file or revision it cannot read is an error (nothing
// is deleted), never "absent". Only a file that is really gone (ENOENT, and
// nothing left under its name) is skipped, and every complete revision must
// have had its map read.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class References {
    public struct Set2: Sendable {
        public var native = Set<ChunkID>()
        public var legacy = Set<String>()
    }

    public let job: Job
    private enum Parsed { case native([ChunkID]), legacy([String]), image }
    private struct Identity: Equatable {
        var ino: UInt64, size: Int64, mtime: Int, mtimeNsec: Int
        init(_ st: stat) {
            ino = UInt64(st.st_ino); size = Int64(st.st_size)
            mtime = st.st_mtim.tv_sec; mtimeNsec = st.st_mtim.tv_nsec
        }
    }
    /// Map files read so far, by path.
    private var maps: [String: (id: Identity, parsed: Parsed)] = [:]
    /// Revision files parsed so far, by path (nil: not a readable revision).
    private var revs: [String: (id: Identity, rev: Revision?)] = [:]
    /// Pin files read so far: path → (bytes consumed, ids).
    private var pins: [String: (offset: Int, ids: [ChunkID])] = [:]

    /// Test hook: runs after the directories were listed, before maps and
    /// pins are read (the window in which sessions may finish).
    var afterListing: (() -> Void)?

    public init(job: Job) {
        self.job = job
    }

    /// Why purge must not delete anything now.
    static func refuse(_ why: String) -> BackyError {
        BackyError(.corrupt, "\(why); purge removes nothing until this is repaired")
    }

    /// stat(2) of a file that must be readable: nil if it is really gone
    /// (ENOENT, and no dangling symlink left under its name); throws for
    /// anything else.
    private func statOrGone(_ p: String) throws -> stat? {
        var st = stat()
        if stat(p, &st) == 0 { return st }
        let e = errno
        if e == ENOENT, Posix.linkStatus(p) == nil, errno == ENOENT { return nil }
        if e == ENOENT { throw References.refuse("\(p) is a dangling symlink") }
        throw References.refuse("cannot stat \(p): \(String(cString: strerror(e)))")
    }

    /// Reads the first bytes of a file (to tell a map from a raw image).
    private func head(_ p: String, _ n: Int) throws -> [UInt8]? {
        let fd = open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw References.refuse("cannot open \(p): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var b = [UInt8](repeating: 0, count: n)
        let got = try b.withUnsafeMutableBytes { try Posix.preadFull(fd, $0.baseAddress!, n, 0, path: p) }
        return Array(b[0..<got])
    }

    /// Parses one map file (native or backy 2.4 JSON); `imageOK`: a file
    /// that is neither may be a backy 2.x raw image. nil if it went away.
    private func parse(_ p: String, imageOK: Bool) throws -> Parsed? {
        guard let first = try head(p, 8) else { return nil }
        do {
            if first.count >= 2 && first[0] == UInt8(ascii: "{") && first[1] == UInt8(ascii: "\"") {
                return .legacy(Array(try LegacyMap.read(path: p).distinctChunks))
            }
            if first == ChunkMap.magic {
                return .native(try ChunkMap.read(path: p).chunks)
            }
        } catch let e as BackyError where e.isNoSuchFile {
            return nil
        } catch {
            throw References.refuse("\(error)")
        }
        if imageOK { return .image }
        throw References.refuse("\(p): neither a chunk map nor a backy 2.4 map")
    }

    /// Re-scans maps and pins; returns the referenced chunks. Throws if a
    /// map, a pin file or a complete revision cannot be read: then nothing
    /// may be deleted.
    public func refresh() throws -> Set2 {
        var mapFiles: [String] = []
        var revFiles: [String] = []
        var legacyFiles = Set<String>()
        for e in try Posix.listDirectoryTyped(job.path) where !e.name.hasPrefix(".") {
            let name = e.name
            if name.hasSuffix(".map") {
                let stem = String(name.dropLast(4))
                // Only `<id>.map` is ever read as a revision's map; other
                // names protect nothing.
                if RevisionID.isWellFormed(stem) { mapFiles.append(job.path + "/" + name) }
            } else if name.hasSuffix(".rev"), e.type == .file, RevisionID.isWellFormed(String(name.dropLast(4))) {
                revFiles.append(job.path + "/" + name)
                // backy 2.4 revisions (complete or not) keep their JSON map
                // (or raw image) in <id>.
                legacyFiles.insert(job.path + "/" + String(name.dropLast(4)))
            }
        }
        let pinDir = job.path + "/" + PinSession.directoryName
        var pinFiles: [String] = []
        if try PinSession.requireRealDirectory(pinDir) {
            for name in try Posix.listDirectory(pinDir) {
                if name.hasSuffix(".map") { mapFiles.append(pinDir + "/" + name) }
                if name.hasSuffix(".pin") { pinFiles.append(pinDir + "/" + name) }
            }
        }
        afterListing?()
        var seen = Set<String>()
        for p in mapFiles + legacyFiles.sorted() {
            guard let st = try statOrGone(p) else { continue }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                // <id> of a native revision means nothing; of a backy 2.4
                // revision it must be its map (checked below).
                if legacyFiles.contains(p) { continue }
                throw References.refuse("\(p) is not a regular file")
            }
            let ident = Identity(st)
            if let known = maps[p], known.id == ident { seen.insert(p); continue }
            guard let parsed = try parse(p, imageOK: legacyFiles.contains(p)) else { continue }
            seen.insert(p)
            maps[p] = (ident, parsed)
        }
        for p in maps.keys where !seen.contains(p) { maps[p] = nil }
        try checkRevisions(revFiles)
        var seenPins = Set<String>()
        for p in pinFiles {
            var entry = pins[p] ?? (0, [])
            let fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
            if fd < 0 {
                if errno == ENOENT { continue }  // its session ended
                throw References.refuse("cannot open pin file \(p): \(String(cString: strerror(errno)))")
            }
            defer { close(fd) }
            seenPins.insert(p)
            var st = stat()
            if fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != S_IFREG || Int64(st.st_size) > Int64(Posix.Limit.map) {
                throw References.refuse("pin file \(p) is not a regular file of at most \(Posix.Limit.map) bytes")
            }
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = try buf.withUnsafeMutableBytes { try Posix.preadFull(fd, $0.baseAddress!, $0.count, Int64(entry.offset), path: p) }
                let whole = n / 32 * 32
                if whole > 0 {
                    buf.withUnsafeBytes { b in
                        for k in stride(from: 0, to: whole, by: 32) { entry.ids.append(ChunkID(bytes: b.baseAddress! + k)) }
                    }
                    entry.offset += whole
                }
                if n < buf.count { break }
            }
            pins[p] = entry
        }
        for p in pins.keys where !seenPins.contains(p) { pins[p] = nil }
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
    /// `.rev`, removal makes the `.rev` incomplete before it removes the map:
    /// so a complete `.rev` read anew names a map that exists, or one that
    /// is being removed (then the `.rev`, read again, is no longer complete).
    private func checkRevisions(_ revFiles: [String]) throws {
        var seenRevs = Set<String>()
        for p in revFiles {
            guard let st = try statOrGone(p) else { continue }
            seenRevs.insert(p)
            let ident = Identity(st)
            let rev: Revision?
            if let known = revs[p], known.id == ident {
                rev = known.rev
            } else {
                do {
                    rev = try Revision.load(path: p)
                } catch let e as BackyError where e.isNoSuchFile {
                    continue
                } catch let e as BackyError where e.kind == .corrupt || e.kind == .usage {
                    // Not a revision (scan ignores it, and so does every
                    // reader); its <id>.map and <id>, if any, were read.
                    rev = nil
                }
                revs[p] = (ident, rev)
            }
            // A file whose uuid is not its name is no revision (scan ignores it).
            guard let rev, rev.isComplete, p.hasSuffix("/" + rev.id + ".rev") else { continue }
            guard let need = mapNeeded(by: rev), !hasMap(need, of: rev) else { continue }
            if try settled(p, needs: need) { revs[p] = nil; continue }
            throw References.refuse("revision \(rev.id) has no readable map (\(need)); repair it or remove it with `backy forget -r \(rev.id)`")
        }
        for p in revs.keys where !seenRevs.contains(p) { revs[p] = nil }
    }

    /// The file holding a revision's chunk list, if it has one.
    private func mapNeeded(by rev: Revision) -> String? {
        switch rev.backend {
        case .native: return job.mapPath(rev.id)
        case .legacyChunked: return job.legacyImagePath(rev.id)
        case .cowfile, .unknown: return nil
        }
    }

    private func hasMap(_ need: String, of rev: Revision) -> Bool {
        switch (rev.backend, maps[need]?.parsed) {
        case (.native, .native?), (.legacyChunked, .legacy?): return true
        default: return false
        }
    }

    /// A complete revision whose map was not read when the directory was
    /// listed: reads the `.rev` and then its map again (a backup may have
    /// just completed it, a removal may be under way). True when it is no
    /// longer complete, or its map is now read.
    private func settled(_ revPath: String, needs need: String) throws -> Bool {
        for attempt in 0..<20 {
            if attempt > 0 { usleep(20_000) }
            let rev: Revision
            do { rev = try Revision.load(path: revPath) } catch { return true }  // gone or no longer a revision
            guard rev.isComplete else { return true }
            guard let st = try statOrGone(need), (st.st_mode & S_IFMT) == S_IFREG else { continue }
            guard let parsed = try parse(need, imageOK: false) else { continue }
            maps[need] = (Identity(st), parsed)
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
                    chunkNames = Set(try ChunkMap.read(path: job.mapPath(rev.id)).chunks.filter { !$0.isZero }.map(\.hex))
                case .legacyChunked:
                    chunkNames = try LegacyMap.read(path: job.legacyImagePath(rev.id)).distinctChunks
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
