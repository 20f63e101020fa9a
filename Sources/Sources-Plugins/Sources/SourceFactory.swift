// SourceFactory: turns a job's source config into a source object, by `type`
// (the names are SourceTypes.known, below the sources, so the scheduler can
// check a configuration without linking them).
import ChunkStore
import Foundation

public enum SourceFactory {
    public static var knownTypes: [String] { SourceTypes.known }

    /// The keys a source of `type` reads (SourceTypes.knownKeys).
    public static func knownKeys(type: String) -> Set<String> { SourceTypes.knownKeys(type: type) }

    public static func make(config: YAMLMap, configPath: String, options: SourceOptions = SourceOptions()) throws -> BackupSource {
        guard let type = config["type"]?.string else {
            throw BackyError(.usage, "\(configPath): the source has no 'type' (one of \(knownTypes.joined(separator: ", ")))")
        }
        switch type {
        case "file":
            return try FileSource(config: config, configPath: configPath)
        case "ceph-rbd":
            return try CephRBDSource(config: config, configPath: configPath, options: options)
        case "flyingcircus":
            // Read as ceph-rbd; the source logs that Consul freezing is not supported.
            return try CephRBDSource(config: config, configPath: configPath, options: options, flyingCircus: true)
        default:
            throw BackyError(.usage, "\(configPath): unknown source type '\(type)' (known: \(knownTypes.joined(separator: ", ")))")
        }
    }

    /// The config map `backy init TYPE SOURCE` writes. A file source must
    /// exist and be a regular file or a block device; it is stored as an
    /// absolute path: the real path of its directory and its own name (a
    /// symlink such as /dev/disk/by-id/… stays the name, so it keeps
    /// meaning the same disk).
    public static func initConfig(type: String, spec: String,
                                  cwd: String = FileManager.default.currentDirectoryPath) throws -> YAMLMap {
        switch type {
        case "file":
            guard !spec.isEmpty else { throw BackyError(.usage, "the file source needs a file name") }
            let given = spec.hasPrefix("/") ? spec : cwd + "/" + spec
            try FileSource.checkKind(given)
            let name = (given as NSString).lastPathComponent
            let dir = (given as NSString).deletingLastPathComponent
            let path: String
            if name == "." || name == "..", let r = Posix.realpath(given) {
                path = r
            } else if let d = Posix.realpath(dir.isEmpty ? "/" : dir) {
                path = (d == "/" ? "" : d) + "/" + name
            } else {
                path = given
            }
            return YAMLMap([("filename", .string(path)), ("type", .string("file"))])
        case "ceph-rbd":
            let parts = spec.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw BackyError(.usage, "ceph source must be initialized with POOL/IMAGE")
            }
            return YAMLMap([("image", .string(String(parts[1]))), ("pool", .string(String(parts[0]))), ("type", .string("ceph-rbd"))])
        default:
            throw BackyError(.usage, "unknown source type '\(type)' (known: file, ceph-rbd)")
        }
    }
}
