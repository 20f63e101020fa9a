// CephError: a failed librbd call of the ceph-rbd source (what was
// attempted and the errno), and how the Rados module's errors read as the
// source's errors. How the cluster is reached (CephAccess, RadosCluster)
// is the Rados module's.
import ChunkStore
import CRBD
import Foundation
import Rados
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

extension RadosError {
    /// The error the ceph-rbd source reports: a cluster it cannot reach is
    /// a source that is not ready; a missing pool too.
    var asSourceError: BackyError {
        switch kind {
        case .config: return BackyError(.usage, description)
        case .connect: return BackyError(.io, "Source is not ready: \(description)")
        case .lockLost: return BackyError(.io, description)
        case .operation:
            if isNotFound { return BackyError(.notFound, "Source is not ready: \(what)") }
            return CephError(what, code).asBackyError
        }
    }
}
