// Exports: what the server serves. `ExportProvider` lists, describes and
// opens exports by name; `JobExports` serves the complete revisions of a
// backy job (names = revision ids; any revision spec is accepted, the empty
// name means the newest). Opening pins the revision's map for purge for as
// long as the connection lasts (docs/store-format.md, "Purge and concurrent
// sessions").
import ChunkStore
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

public struct ExportInfo: Sendable, Equatable {
    /// The canonical name (a revision id).
    public var name: String
    public var description: String
    public var size: UInt64

    public init(name: String, description: String, size: UInt64) {
        self.name = name
        self.description = description
        self.size = size
    }
}

/// An export opened by one connection; `close()` releases it.
public final class OpenExport: @unchecked Sendable {
    public let info: ExportInfo
    public let image: ImageReader
    private let onClose: () -> Void
    private let closed = Locked(false)

    public init(info: ExportInfo, image: ImageReader, onClose: @escaping () -> Void = {}) {
        self.info = info
        self.image = image
        self.onClose = onClose
    }

    public func close() {
        let first = closed.with { c -> Bool in
            defer { c = true }
            return !c
        }
        if first { onClose() }
    }

    deinit { close() }
}

public struct ExportNotFound: Error, CustomStringConvertible {
    public let description: String
    public init(_ s: String) { description = s }
}

public protocol ExportProvider: AnyObject, Sendable {
    /// Every export, in listing order.
    func list() throws -> [ExportInfo]
    /// One export by any name a client may use; throws `ExportNotFound`.
    func describe(_ name: String) throws -> ExportInfo
    /// Opens an export for transmission; throws `ExportNotFound` or others.
    func open(_ name: String) throws -> OpenExport
}

/// The complete revisions of a job.
public final class JobExports: ExportProvider, @unchecked Sendable {
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

    /// The image size from a map's header, without reading the whole map.
    static func mapImageSize(_ path: String) throws -> UInt64 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw ExportNotFound("revision map \(path) cannot be opened: \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        var h = [UInt8](repeating: 0, count: ChunkMap.headerSize)
        let n = h.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
        guard n == ChunkMap.headerSize, Array(h[0..<8]) == ChunkMap.magic else {
            throw ExportNotFound("revision map \(path) is damaged")
        }
        var size: UInt64 = 0
        for k in 0..<8 { size |= UInt64(h[16 + k]) << (8 * UInt64(k)) }
        return size
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

    /// The image size of a revision: from the map header for native ones,
    /// from backy 2.4's map or raw image otherwise.
    func imageSize(_ r: Revision) throws -> UInt64 {
        if r.backend == .native { return try Self.mapImageSize(job.mapPath(r.id)) }
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

    public func open(_ name: String) throws -> OpenExport {
        let r = try resolve(name)
        let session: PinSession?
        do {
            session = try PinSession(jobPath: job.path)
        } catch {
            // A job on read-only media (an offline copy) cannot be purged
            // either: serve it without pins.
            guard access(job.path, W_OK) != 0 else { throw error }
            log.warning("\(job.path) is not writable: serving revision \(r.id) without pinning it for purge")
            session = nil
        }
        do {
            var mapPath = job.pinnableMapPath(r) ?? job.legacyImagePath(r.id)
            if let session, let pinnable = job.pinnableMapPath(r) {
                do {
                    try Gate(jobPath: job.path).shared {
                        try session.pinMap(revision: r.id, mapPath: pinnable)
                    }
                } catch let e as BackyError where e.kind == .notFound {
                    throw ExportNotFound("revision \(r.id) was removed")
                }
                // Read the pinned link: it stays even if the revision goes.
                let link = session.directory + "/" + session.id + "." + r.id + ".map"
                if Posix.exists(link) { mapPath = link }
            }
            let image = try acquire(r, mapPath: mapPath)
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

    private func acquire(_ r: Revision, mapPath: String) throws -> ImageReader {
        let id = r.id
        if let img = images.with({ m -> ImageReader? in
            guard var e = m[id] else { return nil }
            e.users += 1
            m[id] = e
            return e.image
        }) {
            return img
        }
        let img: ImageReader
        switch r.backend {
        case .native: img = NativeImage(map: try ChunkMap.read(path: mapPath), store: job.store)
        case .legacyChunked: img = LegacyImage(map: try LegacyMap.read(path: mapPath), store: job.store)
        case .cowfile: img = try CowfileImage(path: mapPath)
        case .unknown(let s): throw ExportNotFound("revision \(id) has an unknown backend type '\(s)'")
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

/// base:allocation extents of an image, with an optional overlay.
public enum BlockStatus {
    /// Extents for [offset, offset + length) (the range must lie in the
    /// image and `length` > 0). Zero chunks are holes that read as zeros;
    /// everything else, and all overlay blocks, is data. With `reqOne`
    /// exactly one extent, not longer than `length`.
    public static func extents(image: ImageReader, overlay: Overlay?, offset: UInt64, length: UInt32,
                               reqOne: Bool) -> [NBDExtent] {
        let end = offset + UInt64(length)
        let cs = UInt64(image.chunkSize)
        var out: [NBDExtent] = []
        func add(_ len: UInt64, _ flags: UInt32) {
            if let last = out.last, last.flags == flags {
                out[out.count - 1].length += UInt32(len)
            } else {
                out.append(NBDExtent(length: UInt32(len), flags: flags))
            }
        }
        var pos = offset
        while pos < end {
            let c = Int(pos / cs)
            let chunkEnd = min(end, UInt64(c + 1) * cs)
            let base: UInt32 = image.isZero(c) ? (NBD.stateHole | NBD.stateZero) : 0
            if let ov = overlay, ov.touches(chunk: c) {
                for r in ov.runs(offset: pos, length: chunkEnd - pos) {
                    add(r.length, r.inOverlay ? 0 : base)
                }
            } else {
                add(chunkEnd - pos, base)
            }
            pos = chunkEnd
            if reqOne && out.count > 1 { break }
        }
        if reqOne { return [out[0]] }
        return out
    }
}
