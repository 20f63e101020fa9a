// SourceTypes: the `type` values a job's source config may have, and the
// keys each type reads. The sources themselves live in SourcesPlugins; the
// names are here, below them, so that checking a configuration (the
// scheduler, `backy check-config`) needs no source.

public enum SourceTypes {
    public static let known = ["file", "ceph-rbd", "flyingcircus"]

    /// The keys a source of `type` reads (`backend` is backy 2.4's, accepted
    /// and ignored); `backy check-config` warns about others.
    public static func knownKeys(type: String) -> Set<String> {
        let ceph: Set<String> = ["type", "pool", "image", "full-always", "ceph-conf", "client-id", "verify-budget",
                                 "diff-guard-chunks", "backend"]
        switch type {
        case "file": return ["type", "filename", "backend"]
        case "ceph-rbd": return ceph
        case "flyingcircus": return ceph.union(["vm", "consul_acl_token"])
        default: return ["type"]
        }
    }
}
