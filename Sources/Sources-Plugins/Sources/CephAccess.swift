// CephAccess: how to reach a Ceph cluster (the source's `ceph-conf` and
// `client-id`, CEPH_ARGS and CEPH_CONF as the command line read them, the
// way the `rbd` tool does), and CephError, a failed librados/librbd call.
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
