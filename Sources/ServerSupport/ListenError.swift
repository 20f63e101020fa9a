// ListenError: a bind or listen failure as one line for the operator
// ("cannot listen on 127.0.0.1:9000: Address already in use"), not SwiftNIO's
// internals ("bind(descriptor:ptr:bytes:): Address already in use (errno: 98)").
// Used by the NBD server, the console and the metrics responder.
import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

public struct ListenError: Error, CustomStringConvertible, Sendable {
    public let address: String
    public let reason: String

    public init(address: String, _ error: Error) {
        self.address = address
        reason = ListenError.reason(error)
    }

    public var description: String { "cannot listen on \(address): \(reason)" }

    /// The system's words for a socket error (strerror of its errno), with a
    /// hint for the usual cases; other errors as they describe themselves.
    public static func reason(_ error: Error) -> String {
        if let e = error as? ListenError { return e.reason }
        guard let io = error as? IOError else { return "\(error)" }
        let text = String(cString: strerror(io.errnoCode))
        switch io.errnoCode {
        case EADDRINUSE: return "\(text) (another program, or another backy, listens there)"
        case EACCES: return "\(text) (ports below 1024 need root)"
        case EADDRNOTAVAIL: return "\(text) (no interface of this machine has that address)"
        default: return text
        }
    }

    /// "host:port", with brackets around an IPv6 address.
    public static func address(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
