// SourceOptions: what the sources take from the environment, read once by
// the command line and passed down (library code never reads it): the Ceph
// source's read-ahead (BACKY_RBD_READAHEAD) and how librados finds the
// cluster (CEPH_ARGS, CEPH_CONF; CephEnvironment is the Rados module's).
import Rados

public struct SourceOptions: Sendable, Equatable {
    /// Chunks the Ceph source reads ahead of its workers (8 = 32 MiB).
    public var rbdReadAhead: Int
    public var ceph: CephEnvironment

    public init(rbdReadAhead: Int = 8, ceph: CephEnvironment = CephEnvironment()) {
        self.rbdReadAhead = max(1, rbdReadAhead)
        self.ceph = ceph
    }
}
