// RadosCluster: a librados connection found the way the `rbd` tool finds
// it, and RadosIoctx, the I/O context of one pool.
import ChunkStore
import CRBD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A connected cluster handle. Thread-safe (librados is).
public final class RadosCluster: @unchecked Sendable {
    let handle: rados_t
    /// "client.<id>" this connection authenticated as.
    public let entity: String
    /// The config file that was read, if any.
    public let configFile: String?

    /// `environment`: CEPH_ARGS and CEPH_CONF as the command line read them.
    public init(access: CephAccess, environment: CephEnvironment) throws {
        let args = CephAccess.parse(cephArgs: environment.cephArgs)
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
            file = r == 0 ? (environment.cephConf ?? "a default location") : nil
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
