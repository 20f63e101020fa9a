// CephAccess: how to reach a Ceph cluster, as the `rbd` and `rados` tools
// find it: a config file (`-c/--conf` in CEPH_ARGS, else CEPH_CONF, else
// librados' default locations), an identity (`--id/--name/--user`, default
// `admin`), and the rest of CEPH_ARGS applied as configuration (`-m HOST`,
// `--keyring F`, `--rados_osd_op_timeout=N`). The values of CEPH_CONF and
// CEPH_ARGS are given by the caller as a CephEnvironment (the command line
// reads the environment; this library does not).
import Foundation

/// CEPH_ARGS and CEPH_CONF, as the `rbd` tool reads them (the command line
/// reads the environment once and passes them down).
public struct CephEnvironment: Sendable, Equatable {
    /// Arguments as for the `rbd` tool (`--id`, `-c`, `-m`, `--keyring`, …).
    public var cephArgs: String
    /// The config file librados reads when none is given.
    public var cephConf: String?

    public init(cephArgs: String = "", cephConf: String? = nil) {
        self.cephArgs = cephArgs
        self.cephConf = cephConf
    }
}

public struct CephAccess: Sendable, Equatable {
    /// A config file named by the job or store (`ceph-conf`): wins over
    /// CEPH_ARGS' `-c` and CEPH_CONF.
    public var confPath: String?
    /// A client id (`client-id`, with or without `client.`): wins over
    /// CEPH_ARGS' `--id/--name`.
    public var clientID: String?

    public init(confPath: String? = nil, clientID: String? = nil) {
        self.confPath = confPath
        self.clientID = clientID
    }

    /// The parts of CEPH_ARGS librados' own parser does not handle (config
    /// file and identity; global_init does that for the CLI tools), and the
    /// remaining arguments.
    public struct ParsedArgs: Equatable, Sendable {
        public var conf: String?
        public var id: String?
        public var name: String?
        public var cluster: String?
        public var rest: [String] = []
    }

    public static func parse(cephArgs: String) -> ParsedArgs {
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

    /// The entity this access authenticates as ("client.<id>").
    public func entity(_ environment: CephEnvironment) -> String {
        let args = CephAccess.parse(cephArgs: environment.cephArgs)
        if let id = clientID, !id.isEmpty { return id.hasPrefix("client.") ? id : "client." + id }
        if let n = args.name { return n }
        if let id = args.id { return "client." + id }
        return "client.admin"
    }
}
