// RadosError: a failed librados call — what was attempted, librados' errno
// (positive), and what kind of failure it is, so that callers above tell a
// missing object or pool from a bad configuration, a lost lock or an I/O
// failure without parsing messages. This module knows nothing of backy's
// error type; the layers above translate.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct RadosError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The configuration (file, CEPH_ARGS, client name) is unusable.
        case config
        /// The cluster could not be reached or refused us.
        case connect
        /// An object operation failed (see `code`).
        case operation
        /// A lease (a lock with a duration) is no longer held: it was not
        /// renewed in time, or someone else has it now.
        case lockLost
    }

    public let kind: Kind
    public let what: String
    /// The errno (positive); 0 where there is none (a lapsed lease).
    public let code: Int32

    public init(_ kind: Kind, _ what: String, _ ret: Int32 = 0) {
        self.kind = kind
        self.what = what
        code = ret < 0 ? -ret : ret
        if code == ETIMEDOUT { RadosStall.note() }
    }

    /// An operation error from a negative librados return value.
    public init(_ what: String, _ ret: Int32) {
        self.init(.operation, what, ret)
    }

    public var description: String {
        code == 0 ? what : "\(what): \(RadosError.text(code))"
    }

    /// strerror, with librados' meaning for the codes it gives its own sense.
    public static func text(_ code: Int32) -> String {
        switch code {
        case ETIMEDOUT: return "timed out (is an OSD or monitor down?)"
        case ECANCELED: return "a guard of the operation did not hold"
        default: return String(cString: strerror(code))
        }
    }

    public var isNotFound: Bool { code == ENOENT }
    public var isExisting: Bool { code == EEXIST }
    public var isBusy: Bool { code == EBUSY }
}
