// BackyError: the one error type the command line turns into a single
// "Error: ..." line and exit code. Messages name the file, revision or chunk.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct BackyError: Error, CustomStringConvertible, LocalizedError {
    public enum Kind: Sendable {
        case usage          // bad arguments or configuration
        case notFound       // unknown revision, missing file or source
        case io             // an operating system call failed
        case corrupt        // a chunk, map or revision file is damaged
        case verification   // a new revision does not match its source
        case locked         // another process holds the job's lock
        case other
    }
    public let kind: Kind
    public let message: String
    /// The process exit code the command line should use.
    public var exitCode: Int32
    /// The errno of a failed system call (`posix`), so callers can tell a
    /// file that is gone (ENOENT) from one that cannot be read.
    public var errno: Int32?

    public init(_ kind: Kind, _ message: String, exitCode: Int32 = 1, errno: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.exitCode = exitCode
        self.errno = errno
    }

    /// True for a failed system call that found no such file.
    public var isNoSuchFile: Bool { errno == ENOENT }

    public var description: String { message }
    public var errorDescription: String? { message }

    /// An error for a failed system call: "<what>: <strerror>".
    public static func posix(_ what: String, _ err: Int32 = Glibc.errno) -> BackyError {
        BackyError(.io, "\(what): \(String(cString: strerror(err)))", errno: err)
    }
}
