// RBD: thin Swift wrappers over librados and librbd (the CRBD system
// library): a cluster connection found the way the `rbd` tool finds it, pool
// I/O contexts, and image handles with the calls the Ceph source needs
// (snapshots, diff extents, reads). Errors carry librbd's errno.
import ChunkStore
import CRBD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failed librados/librbd call: what was attempted and the (positive) errno.
public struct CephError: Error, CustomStringConvertible {
    public let what: String
    public let code: Int32
    public init(_ what: String, _ ret: Int32) {
        self.what = what
        self.code = ret < 0 ? -ret : ret
    }
    public var description: String { "\(what): \(String(cString: strerror(code)))" }
    public var asBackyError: BackyError {
        BackyError(code == ENOENT ? .notFound : .io, description)
    }
}

/// How to reach the cluster. Unset fields fall back to what the `rbd` tool
/// uses: `-c/--conf` and `--id/--name/--user` in CEPH_ARGS, then CEPH_CONF
/// and librados' default config locations, user `admin`. The rest of
/// CEPH_ARGS (e.g. `-m HOST`, `--keyring F`) is applied as configuration.
public struct CephAccess: Sendable, Equatable {
    public var confPath: String?
    public var clientID: String?
    public init(confPath: String? = nil, clientID: String? = nil) {
        self.confPath = confPath
        self.clientID = clientID
    }

    /// The parts of CEPH_ARGS librados' own parser does not handle (config
    /// file and identity; global_init does that for the CLI tools), and the
    /// remaining arguments.
    struct ParsedArgs: Equatable {
        var conf: String?
        var id: String?
        var name: String?
        var cluster: String?
        var rest: [String] = []
    }

    static func parse(cephArgs: String) -> ParsedArgs {
        var p = ParsedArgs()
        let words = cephArgs.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init)
        var i = 0
        func value(_ w: String, _ long: String) -> String? {
            if w.hasPrefix(long + "=") { return String(w.dropFirst(long.count + 1)) }
            return nil
        }
        while i < words.count {
            let w = words[i]
            let next: String? = i + 1 < words.count ? words[i + 1] : nil
            var matched = false
            for (keys, assign) in [(["-c", "--conf"], 0), (["-i", "--id", "--user"], 1), (["-n", "--name"], 2), (["--cluster"], 3)] {
                for k in keys {
                    var v: String?
                    var used = 1
                    if w == k, let n = next { v = n; used = 2 } else if k.hasPrefix("--"), let x = value(w, k) { v = x }
                    guard let val = v else { continue }
                    switch assign {
                    case 0: p.conf = val
                    case 1: p.id = val
                    case 2: p.name = val
                    default: p.cluster = val
                    }
                    i += used
                    matched = true
                    break
                }
                if matched { break }
            }
            if !matched {
                p.rest.append(w)
                i += 1
            }
        }
        return p
    }
}

/// A connected cluster handle. Thread-safe (librados is).
public final class RadosCluster: @unchecked Sendable {
    let handle: rados_t
    /// "client.<id>" this connection authenticated as.
    public let entity: String
    /// The config file that was read, if any.
    public let configFile: String?

    public init(access: CephAccess, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let args = CephAccess.parse(cephArgs: environment["CEPH_ARGS"] ?? "")
        var name: String
        if let id = access.clientID, !id.isEmpty {
            name = id.hasPrefix("client.") ? id : "client." + id
        } else if let n = args.name {
            name = n
        } else if let id = args.id {
            name = "client." + id
        } else {
            name = "client.admin"
        }
        var h: rados_t?
        let rc = rados_create2(&h, args.cluster ?? "ceph", name, 0)
        guard rc == 0, let handle = h else {
            throw BackyError(.io, "cannot create a Ceph client handle for \(name): \(String(cString: strerror(-rc)))")
        }
        // Until connected, errors shut the handle down here (self is not
        // initialised yet, so deinit does not run).
        // Config file: the job's `ceph-conf`, else CEPH_ARGS' -c, else
        // librados' search ($CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf).
        let explicit = (access.confPath?.isEmpty == false ? access.confPath : nil) ?? args.conf
        var r: Int32
        var file: String?
        if let path = explicit {
            r = rados_conf_read_file(handle, path)
            if r < 0 {
                rados_shutdown(handle)
                throw BackyError(.usage, "cannot read Ceph config \(path): \(String(cString: strerror(-r)))")
            }
            file = path
        } else {
            r = rados_conf_read_file(handle, nil)
            // No config file at all is not fatal: CEPH_ARGS may name the
            // monitors (-m) and the keyring.
            file = r == 0 ? (environment["CEPH_CONF"] ?? "a default location") : nil
        }
        // The rest of CEPH_ARGS overrides the file, as for the rbd tool.
        if !args.rest.isEmpty {
            let cstrings = args.rest.map { strdup($0) }
            defer { for c in cstrings { free(c) } }
            var ptrs = cstrings.map { UnsafePointer<CChar>($0) }
            r = ptrs.withUnsafeMutableBufferPointer { buf in
                rados_conf_parse_argv(handle, Int32(buf.count), buf.baseAddress)
            }
            if r < 0 {
                rados_shutdown(handle)
                throw BackyError(.usage, "cannot apply CEPH_ARGS '\(args.rest.joined(separator: " "))': \(String(cString: strerror(-r)))")
            }
        }
        r = rados_connect(handle)
        if r < 0 {
            rados_shutdown(handle)
            let conf = file.map { "config \($0)" } ?? "no config file found (set CEPH_CONF or the source's ceph-conf)"
            throw BackyError(.io, "Source is not ready: cannot connect to the Ceph cluster as \(name) (\(conf)): \(String(cString: strerror(-r)))")
        }
        self.handle = handle
        self.entity = name
        self.configFile = file
    }

    deinit { rados_shutdown(handle) }

    public func ioctx(pool: String) throws -> RadosIoctx {
        var io: rados_ioctx_t?
        let r = rados_ioctx_create(handle, pool, &io)
        guard r == 0, let io else {
            if r == -ENOENT { throw BackyError(.notFound, "Source is not ready: Ceph pool '\(pool)' does not exist") }
            throw CephError("cannot open Ceph pool '\(pool)'", r).asBackyError
        }
        return RadosIoctx(handle: io, cluster: self, pool: pool)
    }
}

/// An I/O context of one pool. Keeps its cluster alive.
public final class RadosIoctx: @unchecked Sendable {
    let handle: rados_ioctx_t
    let cluster: RadosCluster
    public let pool: String
    init(handle: rados_ioctx_t, cluster: RadosCluster, pool: String) {
        self.handle = handle
        self.cluster = cluster
        self.pool = pool
    }
    deinit { rados_ioctx_destroy(handle) }
}

/// One extent reported by `rbd_diff_iterate2`.
public struct RBDExtent: Sendable, Equatable {
    public var offset: UInt64
    public var length: UInt64
    /// false: the extent is known to be zero (a discarded or removed object).
    public var exists: Bool
}

/// An open RBD image (the head, or a snapshot read-only). Reads may run on
/// several threads at once; close it once, after they are done.
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

/// Read-ahead over a list of extents that worker threads consume roughly in
/// order (ChunkWriter and Parallel.forEach hand out items by a shared
/// counter): keeps up to `window` asynchronous reads in flight, so that
/// librbd and the OSDs work while the workers hash and compress. `take(k)`
/// waits for extent k, copies it out and starts the read `window` places
/// further on. Memory: `window` buffers.
public final class RBDReadAhead: @unchecked Sendable {
    private struct Slot {
        var buffer: UnsafeMutableRawBufferPointer
        var completion: rbd_completion_t?
        var position = -1
    }
    private let image: RBDImage
    private let extents: [(offset: UInt64, length: Int)]
    private let window: Int
    private let cond = NSCondition()
    private var slots: [Slot]
    private var issueError: Error?
    private var stopped = false
    private var closed = false

    public init(image: RBDImage, extents: [(offset: UInt64, length: Int)], window: Int, bufferSize: Int) {
        self.image = image
        self.extents = extents
        self.window = max(1, min(window, extents.count))
        slots = (0..<self.window).map { _ in Slot(buffer: .allocate(byteCount: bufferSize, alignment: 4096)) }
        cond.lock()
        for k in 0..<self.window { issueLocked(k) }
        cond.unlock()
    }

    deinit { close() }

    /// Starts the read of position `k` into slot `k % window` (lock held;
    /// the slot is free: position k - window has been taken).
    private func issueLocked(_ k: Int) {
        guard k < extents.count, issueError == nil, !stopped else { return }
        let s = k % window
        do {
            let e = extents[k]
            slots[s].completion = try image.aioRead(at: e.offset, length: e.length, into: slots[s].buffer.baseAddress!)
            slots[s].position = k
        } catch {
            issueError = error
        }
    }

    /// Copies extent `k` into `out` (nil: drops it); returns the bytes
    /// read, or nil if `stop` came before extent k's read was started.
    /// Every position must be taken once, in roughly ascending order (a
    /// position not taken holds up the one `window` places further on).
    @discardableResult
    public func take(_ k: Int, into out: UnsafeMutableRawBufferPointer?) throws -> Int? {
        let s = k % window
        cond.lock()
        // Slot s holds position k once the taker of k - window is done.
        while slots[s].position != k && issueError == nil && !stopped { cond.wait() }
        if slots[s].position != k {
            let e = issueError
            cond.unlock()
            if let e { throw e }
            return nil
        }
        let c = slots[s].completion!
        cond.unlock()
        // Only the taker of k touches slot s until it issues k + window.
        rbd_aio_wait_for_complete(c)
        let r = rbd_aio_get_return_value(c)
        rbd_aio_release(c)
        let e = extents[k]
        var failure: Error?
        if r < 0 {
            failure = CephError("cannot read \(e.length) bytes at offset \(e.offset) of \(image.spec)", Int32(r)).asBackyError
        } else if let out {
            out.baseAddress!.copyMemory(from: slots[s].buffer.baseAddress!, byteCount: min(r, out.count))
        }
        cond.lock()
        slots[s].completion = nil
        slots[s].position = -1
        issueLocked(k + window)
        cond.broadcast()
        cond.unlock()
        if let failure { throw failure }
        return min(r, out?.count ?? r)
    }

    /// Starts no more reads; `take` of a position not yet started returns nil.
    public func stop() {
        cond.lock()
        stopped = true
        cond.broadcast()
        cond.unlock()
    }

    /// Waits for reads still in flight and frees the buffers. Call when no
    /// thread is in `take` any more.
    public func close() {
        cond.lock()
        if closed { cond.unlock(); return }
        closed = true
        stopped = true
        let pending = slots.compactMap { $0.completion }
        cond.broadcast()
        cond.unlock()
        for c in pending {
            rbd_aio_wait_for_complete(c)
            rbd_aio_release(c)
        }
        for s in slots { s.buffer.deallocate() }
        slots = []
    }
}
