// StoreFactory: opens the store of a job directory. A job whose local
// `config` has a `store:` key (`rados:POOL/NAMESPACE`) keeps its history in
// Ceph RADOS (RadosBackend, docs/rados.md), reached with that config's
// `ceph-conf` and `client-id` and the CEPH_CONF/CEPH_ARGS the command line
// read; any other job's store is its directory (DirectoryBackend). The
// `store:` key is read here and nowhere else.
import Foundation
import Rados

public enum StoreFactory {
    /// CEPH_ARGS and CEPH_CONF, set once by the command line at start
    /// (library code never reads the environment).
    // nonisolated(unsafe): set once by the command line (main) before any job is opened or thread started; only read after.
    nonisolated(unsafe) public static var cephEnvironment = CephEnvironment()

    /// What a job's local `config` says about its store.
    public struct LocalStore: Sendable, Equatable {
        public var spec: RadosStoreSpec
        public var access: CephAccess
        public var lockDuration: Double

        public init(spec: RadosStoreSpec, access: CephAccess, lockDuration: Double) {
            self.spec = spec
            self.access = access
            self.lockDuration = lockDuration
        }
    }

    /// The RADOS store a local config names; nil for a directory job.
    public static func radosStore(config: YAMLMap, configPath: String) throws -> LocalStore? {
        guard let v = config["store"], !v.isNull else { return nil }
        guard let s = v.string, RadosStoreSpec.isRados(s) else {
            throw BackyError(.usage, "\(configPath): 'store' must be rados:POOL/NAMESPACE")
        }
        let spec = try RadosStoreSpec.parse(s, defaultNamespace: "")
        func str(_ key: String) throws -> String? {
            guard let v = config[key], !v.isNull else { return nil }
            guard let s = v.string, !s.isEmpty else { throw BackyError(.usage, "\(configPath): '\(key)' must be a non-empty string") }
            return s
        }
        var duration = RadosBackend.defaultLockDuration
        if let v = config["lock-duration"], !v.isNull {
            guard let d = v.double ?? v.int.map(Double.init), d >= 1, d <= 3600 else {
                throw BackyError(.usage, "\(configPath): 'lock-duration' must be a number of seconds from 1 to 3600")
            }
            duration = d
        }
        return LocalStore(spec: spec, access: CephAccess(confPath: try str("ceph-conf"), clientID: try str("client-id")),
                          lockDuration: duration)
    }

    /// Opens the RADOS store a local config names.
    public static func open(_ store: LocalStore) throws -> RadosBackend {
        try RadosBackend(spec: store.spec, access: store.access, environment: cephEnvironment,
                         lockDuration: store.lockDuration)
    }

    /// The store of the job whose directory (a real path) is `jobPath`,
    /// whose local config is `config`.
    public static func open(jobPath: String, config: YAMLMap) throws -> StoreBackend {
        if let r = try radosStore(config: config, configPath: jobPath + "/config") {
            let backend = try open(r)
            guard try backend.isInitialized() else {
                throw BackyError(.notFound, "\(r.spec) holds no backy job (was it created with `backy init --store`?)")
            }
            return backend
        }
        return DirectoryBackend(jobPath: jobPath)
    }
}
