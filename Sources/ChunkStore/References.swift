// References: which chunks the job's revisions and running sessions refer
// to. Reads every map once and re-reads only maps and pin bytes that are new,
// so purge can recompute the referenced set cheaply before each batch.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class References {
    public let job: Job
    /// Chunks named by revision maps and map links, by map file identity.
    private var maps: [String: (ino: UInt64, ids: [ChunkID])] = [:]
    /// Pin files read so far: path → (bytes consumed, ids).
    private var pins: [String: (offset: Int, ids: [ChunkID])] = [:]

    public init(job: Job) {
        self.job = job
    }

    /// Re-scans maps and pins; returns the set of referenced chunk ids.
    /// Throws if a map cannot be read: then nothing may be deleted.
    public func refresh() throws -> Set<ChunkID> {
        var seenMaps = Set<String>()
        var mapFiles: [String] = []
        for name in try Posix.listDirectory(job.path) where name.hasSuffix(".map") && !name.hasPrefix(".") {
            mapFiles.append(job.path + "/" + name)
        }
        let pinDir = job.path + "/" + PinSession.directoryName
        var pinFiles: [String] = []
        if Posix.isDirectory(pinDir) {
            for name in try Posix.listDirectory(pinDir) {
                if name.hasSuffix(".map") { mapFiles.append(pinDir + "/" + name) }
                if name.hasSuffix(".pin") { pinFiles.append(pinDir + "/" + name) }
            }
        }
        for p in mapFiles {
            guard let st = Posix.status(p), (st.st_mode & S_IFMT) == S_IFREG else { continue }
            seenMaps.insert(p)
            let ino = UInt64(st.st_ino)
            if let known = maps[p], known.ino == ino { continue }
            let map: ChunkMap
            do {
                map = try ChunkMap.read(path: p)
            } catch let e as BackyError where e.kind == .notFound {
                continue  // removed meanwhile
            }
            maps[p] = (ino, map.chunks)
        }
        for p in maps.keys where !seenMaps.contains(p) { maps[p] = nil }
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
        var refs = Set<ChunkID>()
        for (_, m) in maps { for c in m.ids where !c.isZero { refs.insert(c) } }
        for (_, e) in pins { for c in e.ids { refs.insert(c) } }
        return refs
    }

    /// Revision ids whose maps name each of `ids` (revision maps only).
    public func revisionsReferencing(_ ids: Set<ChunkID>) throws -> [ChunkID: [String]] {
        var out: [ChunkID: [String]] = [:]
        for name in try Posix.listDirectory(job.path) where name.hasSuffix(".map") && !name.hasPrefix(".") {
            let rev = String(name.dropLast(4))
            guard let map = try? ChunkMap.read(path: job.path + "/" + name) else { continue }
            for c in Set(map.chunks) where ids.contains(c) { out[c, default: []].append(rev) }
        }
        return out
    }
}
