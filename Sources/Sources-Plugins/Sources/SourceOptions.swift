// SourceOptions: what the sources take from the environment, read once by
// the command line and passed down (library code never reads it): the Ceph
// source's read-ahead (BACKY_RBD_READAHEAD) and how librados finds the
// cluster (CEPH_ARGS, CEPH_CONF).

/// CEPH_ARGS and CEPH_CONF, as the `rbd` tool reads them.
public struct CephEnvironment: Sendable, Equatable {
    /// Arguments as for the `rbd` tool (`--id`, `-c`, `-m`, `--keyring`, …).
    public var cephArgs: String
    /// The config file librados reads when none is given (librados itself
    /// reads CEPH_CONF; this only names it in messages).
    public var cephConf: String?

    public init(cephArgs: String = "", cephConf: String? = nil) {
        self.cephArgs = cephArgs
        self.cephConf = cephConf
    }
}

public struct SourceOptions: Sendable, Equatable {
    /// Chunks the Ceph source reads ahead of its workers (8 = 32 MiB).
    public var rbdReadAhead: Int
    public var ceph: CephEnvironment

    public init(rbdReadAhead: Int = 8, ceph: CephEnvironment = CephEnvironment()) {
        self.rbdReadAhead = max(1, rbdReadAhead)
        self.ceph = ceph
    }
}
