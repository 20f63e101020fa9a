// References: which chunks the job's revisions and running sessions refer
// to — native chunk ids from binary maps and pin files, and backy 2.4 chunk
// hashes from JSON maps. Reads every map once and re-reads only maps and pin
// bytes that are new, so purge can recompute the set before each batch.
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
    private enum Parsed { case native([ChunkID]), legacy([String]) }
    /// Map files read so far, by path and inode.
    private var maps: [String: (ino: UInt64, parsed: Parsed)] = [:]
    /// Pin files read so far: path → (bytes consumed, ids).
    private var pins: [String: (offset: Int, ids: [ChunkID])] = [:]

    public init(job: Job) {
        self.job = job
    }

    /// Re-scans maps and pins; returns the referenced chunks. Throws if a
    /// map cannot be read: then nothing may be deleted.
    public func refresh() throws -> Set2 {
        var mapFiles: [String] = []
        var legacyFiles: [String] = []
        for name in try Posix.listDirectory(job.path) where !name.hasPrefix(".") {
            if name.hasSuffix(".map") {
                mapFiles.append(job.path + "/" + name)
            } else if name.hasSuffix(".rev") {
                // backy 2.4 revisions (complete or not) keep their JSON map in <id>.
                let id = String(name.dropLast(4))
                let p = job.path + "/" + id
                if let st = Posix.status(p), (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= 2 {
                    legacyFiles.append(p)
                }
            }
        }
        let pinDir = job.path + "/" + PinSession.directoryName
        var pinFiles: [String] = []
        if Posix.isDirectory(pinDir) {
            for name in try Posix.listDirectory(pinDir) {
                if name.hasSuffix(".map") { mapFiles.append(pinDir + "/" + name) }
                if name.hasSuffix(".pin") { pinFiles.append(pinDir + "/" + name) }
            }
        }
        var seen = Set<String>()
        for p in mapFiles + legacyFiles {
            guard let st = Posix.status(p), (st.st_mode & S_IFMT) == S_IFREG else { continue }
            seen.insert(p)
            let ino = UInt64(st.st_ino)
            if let known = maps[p], known.ino == ino { continue }
            let bytes: [UInt8]
            do { bytes = try Posix.readFile(p) } catch { continue }  // removed meanwhile
            if bytes.count >= 2 && bytes[0] == UInt8(ascii: "{") && bytes[1] == UInt8(ascii: "\"") {
                maps[p] = (ino, .legacy(Array(try LegacyMap.parse(bytes, path: p).distinctChunks)))
            } else if ChunkMap.looksLikeMap(bytes) {
                maps[p] = (ino, .native(try ChunkMap.decode(bytes, path: p).chunks))
            } else if legacyFiles.contains(p) {
                continue  // a cowfile raw image, not a map
            } else {
                throw BackyError(.corrupt, "\(p): neither a chunk map nor a backy 2.4 map")
            }
        }
        for p in maps.keys where !seen.contains(p) { maps[p] = nil }
        var seenPins = Set<String>()
        for p in pinFiles {
            seenPins.insert(p)
            var entry = pins[p] ?? (0, [])
            let fd = open(p, O_RDONLY | O_CLOEXEC)
            if fd < 0 { continue }
            defer { close(fd) }
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
            }
        }
        for (_, e) in pins { for c in e.ids { refs.native.insert(c) } }
        return refs
    }

    /// Revision ids whose maps name each chunk (by chunk name: 64 hex for
    /// native chunks, 32 for backy 2.4's).
    public func revisionsReferencing(_ names: Set<String>) throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        for rev in try job.scan() {
            let chunkNames: Set<String>
            switch rev.backend {
            case .native:
                guard let m = try? ChunkMap.read(path: job.mapPath(rev.id)) else { continue }
                chunkNames = Set(m.chunks.filter { !$0.isZero }.map(\.hex))
            case .legacyChunked:
                guard let m = try? LegacyMap.read(path: job.legacyImagePath(rev.id)) else { continue }
                chunkNames = m.distinctChunks
            default:
                continue
            }
            for c in chunkNames where names.contains(c) { out[c, default: []].append(rev.id) }
        }
        return out
    }
}
