// JobExports: the complete revisions of a backy job as NBD exports (names
// = revision ids; any revision spec is accepted, the empty name means the
// newest). Opening pins the revision's map for purge for as long as the
// connection lasts; connections reading one revision share its image.
import ChunkStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The complete revisions of a job.
public final class JobExports: ExportProvider, Sendable {
    public let job: Job
    let log: Logger
    /// Maps loaded once and shared by the connections that read them.
    private let images = Locked<[String: (image: ImageReader, users: Int)]>([:])

    public init(job: Job, log: Logger) {
        self.job = job
        self.log = log
    }

    public static func describe(_ r: Revision) -> String {
        let tags = r.sortedTags.isEmpty ? "-" : r.sortedTags.joined(separator: ",")
        return "\(Timestamp.formatSeconds(r.timestamp)) UTC, tags: \(tags), trust: \(r.trust.rawValue)"
    }

    private func servable(_ all: [Revision]) -> [Revision] {
        all.filter { r in
            guard r.isComplete else { return false }
            switch r.backend {
            case .native, .legacyChunked, .cowfile: return true
            case .unknown: return false
            }
        }
    }

    /// The image size from a map's header, without reading the whole map.
    func mapImageSize(_ id: String) throws -> UInt64 {
        let map = StoreObjectName.map(id)
        let loc = job.backend.location(of: map)
        let object: StoredObject
        do {
            guard let o = try job.backend.open(map) else { throw BackyError.posix("\(loc)", ENOENT) }
            object = o
        } catch let e as BackyError {
            throw ExportNotFound("revision map \(loc) cannot be opened: \(String(cString: strerror(e.errno ?? EIO)))")
        }
        var h = [UInt8](repeating: 0, count: ChunkMap.headerSize)
        let n = (try? h.withUnsafeMutableBytes { try object.read(into: $0, at: 0) }) ?? 0
        guard n == ChunkMap.headerSize, Array(h[0..<8]) == ChunkMap.magic else {
            throw ExportNotFound("revision map \(loc) is damaged")
        }
        var size: UInt64 = 0
        for k in 0..<8 { size |= UInt64(h[16 + k]) << (8 * UInt64(k)) }
        return size
    }

    /// The image size of a revision: from the map header for native ones,
    /// from backy 2.4's map or raw image otherwise.
    func imageSize(_ r: Revision) throws -> UInt64 {
        if r.backend == .native { return try mapImageSize(r.id) }
        do { return try job.openImage(r).imageSize } catch { throw ExportNotFound("revision \(r.id): \(error)") }
    }

    public func list() throws -> [ExportInfo] {
        var out: [ExportInfo] = []
        for r in servable(try job.scan()) {
            guard let size = try? imageSize(r) else { continue }
            out.append(ExportInfo(name: r.id, description: Self.describe(r), size: size))
        }
        return out
    }

    /// Resolves a client's export name to a complete revision.
    func resolve(_ name: String) throws -> Revision {
        let all = try job.scan()
        let spec = name.isEmpty ? "latest" : name
        let r: Revision
        do {
            r = try Job.find(spec, in: all)
        } catch let e as BackyError {
            throw ExportNotFound(e.message)
        }
        guard r.isComplete else { throw ExportNotFound("revision \(r.id) is incomplete (its backup did not finish)") }
        guard servable([r]).count == 1 else {
            throw ExportNotFound("revision \(r.id) has an unknown backend type '\(r.backend.name)' and cannot be served")
        }
        return r
    }

    public func describe(_ name: String) throws -> ExportInfo {
        let r = try resolve(name)
        return ExportInfo(name: r.id, description: Self.describe(r), size: try imageSize(r))
    }

    /// Opens a revision, its map pinned for purge by a session of its own
    /// for as long as the connection lasts (docs/store-format.md, "Purge
    /// and concurrent sessions").
    public func open(_ name: String) throws -> OpenExport {
        let r = try resolve(name)
        let session: StoreSession?
        do {
            session = try job.backend.openSession()
        } catch {
            // A job on read-only media (an offline copy) cannot be purged
            // either: serve it without pins.
            guard !job.backend.isWritable else { throw error }
            log.warning("\(job.path) is not writable: serving revision \(r.id) without pinning it for purge")
            session = nil
        }
        do {
            let image = try acquire(r, session: session)
            let info = ExportInfo(name: r.id, description: Self.describe(r), size: image.imageSize)
            return OpenExport(info: info, image: image) { [self] in
                release(r.id)
                session?.close()
            }
        } catch {
            session?.close()
            throw error
        }
    }

    /// The revision's image, shared with other connections reading it; the
    /// session pins its map either way.
    private func acquire(_ r: Revision, session: StoreSession?) throws -> ImageReader {
        let id = r.id
        let pinned: StoreObjectName?
        do {
            pinned = try job.pinnableMap(r).flatMap { map in try session.map { try $0.pinMap(map, revision: id) } }
        } catch let e as BackyError where e.kind == .notFound {
            throw ExportNotFound("revision \(id) was removed")
        }
        if let img = images.with({ m -> ImageReader? in
            guard var e = m[id] else { return nil }
            e.users += 1
            m[id] = e
            return e.image
        }) {
            return img
        }
        let img: ImageReader
        do {
            img = try job.openImage(r, mapObject: pinned)
        } catch let e as BackyError where e.kind == .usage {
            throw ExportNotFound(e.message)
        }
        return images.with { m in
            if var e = m[id] {
                e.users += 1
                m[id] = e
                return e.image
            }
            m[id] = (img, 1)
            return img
        }
    }

    private func release(_ id: String) {
        images.with { m in
            guard var e = m[id] else { return }
            e.users -= 1
            m[id] = e.users > 0 ? e : nil
        }
    }
}
