// RBDImage: an open RBD image through librbd (the CRBD system library): the
// head, or a snapshot read-only, with the calls the Ceph source needs
// (snapshots, diff extents, reads). Errors carry librbd's errno.
import ChunkStore
import CRBD
import Foundation
import Rados
#if canImport(Glibc)
import Glibc
#endif

/// One extent reported by `rbd_diff_iterate2`.
public struct RBDExtent: Sendable, Equatable {
    public var offset: UInt64
    public var length: UInt64
    /// false: the extent is known to be zero (a discarded or removed object).
    public var exists: Bool
}

/// An open RBD image (the head, or a snapshot read-only). Reads may run on
/// several threads at once; close it once, after they are done.
// @unchecked Sendable: `handle` is set in init and cleared by close(), which callers run once, after every reader is done (librbd allows concurrent reads on one image).
public final class RBDImage: @unchecked Sendable {
    private var handle: rbd_image_t?
    let io: RadosIoctx
    public let name: String
    public let snapshot: String?
    public var spec: String { "\(io.pool)/\(name)" + (snapshot.map { "@" + $0 } ?? "") }

    /// Opens `name` in `io`; a snapshot is opened read-only. Throws with
    /// kind `.notFound` if the image (or snapshot) does not exist.
    public init(io: RadosIoctx, name: String, snapshot: String? = nil, readOnly: Bool = false) throws {
        self.io = io
        self.name = name
        self.snapshot = snapshot
        var h: rbd_image_t?
        let r = (readOnly || snapshot != nil) ? rbd_open_read_only(io.handle, name, &h, snapshot)
                                              : rbd_open(io.handle, name, &h, nil)
        let spec = "\(io.pool)/\(name)" + (snapshot.map { "@" + $0 } ?? "")
        guard r == 0, h != nil else {
            if r == -ENOENT {
                throw BackyError(.notFound, snapshot == nil ? "RBD image \(spec) does not exist" : "RBD snapshot \(spec) does not exist")
            }
            throw CephError("cannot open RBD image \(spec)", r).asBackyError
        }
        handle = h
    }

    deinit { close() }

    public func close() {
        if let h = handle { rbd_close(h) }
        handle = nil
    }

    private func h() throws -> rbd_image_t {
        guard let h = handle else { throw BackyError(.other, "RBD image \(spec) is closed") }
        return h
    }

    public func size() throws -> UInt64 {
        var s: UInt64 = 0
        let r = rbd_get_size(try h(), &s)
        if r < 0 { throw CephError("cannot get the size of \(spec)", r).asBackyError }
        return s
    }

    public struct Snapshot: Sendable, Equatable {
        public var id: UInt64
        public var name: String
        public var size: UInt64
    }

    public func snapshots() throws -> [Snapshot] {
        let img = try h()
        var max: Int32 = 16
        while true {
            let buf = UnsafeMutablePointer<rbd_snap_info_t>.allocate(capacity: Int(max) + 1)
            defer { buf.deallocate() }
            var n = max
            let r = rbd_snap_list(img, buf, &n)
            if r == -ERANGE {
                max = Swift.max(n, max * 2)
                continue
            }
            if r < 0 { throw CephError("cannot list the snapshots of \(spec)", r).asBackyError }
            var out: [Snapshot] = []
            for i in 0..<Int(r) {
                let s = buf[i]
                out.append(Snapshot(id: s.id, name: s.name.map { String(cString: $0) } ?? "", size: s.size))
            }
            rbd_snap_list_end(buf)
            return out
        }
    }

    public func snapshotExists(_ snap: String) throws -> Bool {
        var e = false
        let r = rbd_snap_exists(try h(), snap, &e)
        if r < 0 { throw CephError("cannot look up snapshot \(spec)@\(snap)", r).asBackyError }
        return e
    }

    public func createSnapshot(_ snap: String) throws {
        let r = rbd_snap_create(try h(), snap)
        if r < 0 { throw CephError("cannot create snapshot \(spec)@\(snap)", r).asBackyError }
    }

    public func removeSnapshot(_ snap: String) throws {
        let r = rbd_snap_remove(try h(), snap)
        if r < 0 { throw CephError("cannot remove snapshot \(spec)@\(snap)", r).asBackyError }
    }

    /// Reads `buf.count` bytes at `offset` (fewer only at the end of the image).
    public func read(at offset: UInt64, into buf: UnsafeMutableRawBufferPointer) throws -> Int {
        let img = try h()
        var done = 0
        while done < buf.count {
            let r = rbd_read2(img, offset + UInt64(done), buf.count - done,
                              buf.baseAddress!.advanced(by: done).assumingMemoryBound(to: CChar.self),
                              Int32(LIBRADOS_OP_FLAG_FADVISE_NOCACHE))
            if r < 0 {
                throw CephError("cannot read \(buf.count - done) bytes at offset \(offset + UInt64(done)) of \(spec)", Int32(r)).asBackyError
            }
            if r == 0 { break }
            done += r
        }
        return done
    }

    /// Starts an asynchronous read of `length` bytes at `offset` into `buf`.
    func aioRead(at offset: UInt64, length: Int, into buf: UnsafeMutableRawPointer) throws -> rbd_completion_t {
        let img = try h()
        var c: rbd_completion_t?
        var r = rbd_aio_create_completion(nil, nil, &c)
        guard r == 0, let c else { throw CephError("cannot start a read of \(spec)", r).asBackyError }
        r = rbd_aio_read2(img, offset, length, buf.assumingMemoryBound(to: CChar.self), c,
                          Int32(LIBRADOS_OP_FLAG_FADVISE_NOCACHE))
        if r < 0 {
            rbd_aio_release(c)
            throw CephError("cannot read \(length) bytes at offset \(offset) of \(spec)", r).asBackyError
        }
        return c
    }

    private final class DiffBox {
        var extents: [RBDExtent] = []
    }

    /// The extents that changed since snapshot `from` (nil: since the image
    /// was created, i.e. every allocated extent), up to what this handle
    /// shows. With `wholeObject` the extents cover whole objects.
    public func diff(from: String?, offset: UInt64 = 0, length: UInt64, wholeObject: Bool = true,
                     includeParent: Bool = true) throws -> [RBDExtent] {
        let img = try h()
        let box = DiffBox()
        let arg = Unmanaged.passUnretained(box).toOpaque()
        let cb: @convention(c) (UInt64, Int, Int32, UnsafeMutableRawPointer?) -> Int32 = { off, len, exists, arg in
            let b = Unmanaged<DiffBox>.fromOpaque(arg!).takeUnretainedValue()
            b.extents.append(RBDExtent(offset: off, length: UInt64(len), exists: exists != 0))
            return 0
        }
        let r = withExtendedLifetime(box) {
            rbd_diff_iterate2(img, from, offset, length, includeParent ? 1 : 0, wholeObject ? 1 : 0, cb, arg)
        }
        if r < 0 {
            throw CephError("cannot diff \(spec) " + (from.map { "against snapshot \($0)" } ?? "from its creation"), r).asBackyError
        }
        return box.extents
    }
}
