// RadosCluster: one connection to a Ceph cluster (a librados client
// instance), opened as CephAccess says. Thread-safe (librados is). Its
// I/O contexts keep it alive; so does the lease keeper that renews the
// locks taken through it. A connection is one lock owner to RADOS: locks
// taken through it are held by (this client instance, cookie).
import CRBD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// @unchecked Sendable: the rados_t handle may be used from several threads at once (librados is thread-safe); `keeperInstance` is read and changed only under `keeperLock` (and in deinit).
public final class RadosCluster: @unchecked Sendable {
    public let handle: rados_t
    /// "client.<id>" this connection authenticated as.
    public let entity: String
    /// The config file that was read, if any.
    public let configFile: String?
    private let keeperLock = NSLock()
    private var keeperInstance: RadosLeaseKeeper?

    /// Connects. `opTimeout` (seconds) bounds every OSD and monitor
    /// operation (librados' default is to wait forever for an OSD that is
    /// down); a configuration that sets a shorter bound keeps it.
    public init(access: CephAccess, environment: CephEnvironment, opTimeout: Double? = nil) throws {
        let args = CephAccess.parse(cephArgs: environment.cephArgs)
        let name = access.entity(environment)
        var h: rados_t?
        let rc = rados_create2(&h, args.cluster ?? "ceph", name, 0)
        guard rc == 0, let handle = h else {
            throw RadosError(.config, "cannot create a Ceph client handle for \(name)", rc)
        }
        // Until connected, errors shut the handle down here (self is not
        // initialised yet, so deinit does not run).
        // Config file: the job's `ceph-conf`, else CEPH_ARGS' -c, else
        // CEPH_CONF, else librados' default locations.
        let explicit = (access.confPath?.isEmpty == false ? access.confPath : nil) ?? args.conf
        var r: Int32
        var file: String?
        if let path = explicit {
            r = rados_conf_read_file(handle, path)
            if r < 0 {
                rados_shutdown(handle)
                throw RadosError(.config, "cannot read Ceph config \(path)", r)
            }
            file = path
        } else {
            // No config file at all is not fatal: CEPH_ARGS may name the
            // monitors (-m) and the keyring.
            let env = environment.cephConf?.isEmpty == false ? environment.cephConf : nil
            r = rados_conf_read_file(handle, env)
            file = r == 0 ? (env ?? "a default location") : nil
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
                throw RadosError(.config, "cannot apply CEPH_ARGS '\(args.rest.joined(separator: " "))'", r)
            }
        }
        if let t = opTimeout, t > 0 {
            // Unset (0: wait forever) or longer than the bound the caller's
            // locks rely on: the bound. A shorter configured value stays.
            for key in ["rados_osd_op_timeout", "rados_mon_op_timeout"] {
                let configured = RadosCluster.option(handle, key).flatMap { Double($0) } ?? 0
                if configured == 0 || configured > t.rounded(.up) {
                    _ = rados_conf_set(handle, key, String(format: "%.0f", t.rounded(.up)))
                }
            }
        }
        let conf = file.map { "config \($0)" } ?? "no config file found (set CEPH_CONF or the job's ceph-conf)"
        // Without monitor addresses librados falls back to DNS SRV records
        // and, when there are none, prints its own line on stderr beside
        // ours: say it once, here, instead.
        if (RadosCluster.option(handle, "mon_host") ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
            rados_shutdown(handle)
            throw RadosError(.connect, "cannot connect to the Ceph cluster as \(name): no monitor addresses (mon_host) in \(conf) or CEPH_ARGS (-m)")
        }
        r = rados_connect(handle)
        if r < 0 {
            rados_shutdown(handle)
            throw RadosError(.connect, "cannot connect to the Ceph cluster as \(name) (\(conf))", r)
        }
        self.handle = handle
        self.entity = name
        self.configFile = file
    }

    deinit {
        keeperInstance?.stop()
        rados_shutdown(handle)
    }

    static func option(_ handle: rados_t, _ key: String) -> String? {
        var buf = [CChar](repeating: 0, count: 256)
        guard rados_conf_get(handle, key, &buf, buf.count) == 0 else { return nil }
        return String(cString: buf)
    }

    /// A configuration value as librados sees it now.
    public func option(_ key: String) -> String? { RadosCluster.option(handle, key) }

    /// This client instance's id (the number in "client.<id>" that lock
    /// listings show as the holder).
    public var instanceID: UInt64 { rados_get_instance_id(handle) }

    /// The lock holder name other clients see for this connection.
    public var lockerName: String { "client.\(instanceID)" }

    /// An I/O context on `pool`, restricted to `namespace` ("" is the
    /// pool's default namespace). Throws `.operation` with ENOENT if the
    /// pool does not exist.
    public func ioctx(pool: String, namespace: String = "") throws -> RadosIoctx {
        var io: rados_ioctx_t?
        let r = rados_ioctx_create(handle, pool, &io)
        guard r == 0, let io else {
            if r == -ENOENT { throw RadosError("Ceph pool '\(pool)' does not exist", r) }
            throw RadosError("cannot open Ceph pool '\(pool)'", r)
        }
        if !namespace.isEmpty { rados_ioctx_set_namespace(io, namespace) }
        return RadosIoctx(handle: io, cluster: self, pool: pool, namespace: namespace)
    }

    /// Whether `pool` exists.
    public func poolExists(_ pool: String) throws -> Bool {
        let r = rados_pool_lookup(handle, pool)
        if r >= 0 { return true }
        if r == -ENOENT { return false }
        throw RadosError("cannot look up Ceph pool '\(pool)'", Int32(truncatingIfNeeded: r))
    }

    /// The thread that renews this connection's leases (started on first use).
    var keeper: RadosLeaseKeeper {
        keeperLock.lock(); defer { keeperLock.unlock() }
        if let k = keeperInstance { return k }
        let k = RadosLeaseKeeper()
        keeperInstance = k
        return k
    }
}
