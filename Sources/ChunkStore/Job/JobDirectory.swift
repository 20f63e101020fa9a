// JobDirectory: creating a job: its directory (0700, or 0750 with group
// access, whatever the umask) and its `config` (the source, one line of
// flow YAML like backy 2.4's), never over an existing config.
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

extension Job {
    /// Mode of a new job directory: only its owner may enter it (its
    /// chunks are the VM's data), or with `groupAccess` also its group
    /// (0750), whatever the umask.
    public static func directoryMode(groupAccess: Bool) -> mode_t { groupAccess ? 0o750 : 0o700 }

    /// Creates a job directory (missing parents 0755) with
    /// `directoryMode`; an existing directory is left as it is. Returns
    /// whether it was created.
    @discardableResult
    public static func createDirectory(_ path: String, groupAccess: Bool) throws -> Bool {
        if Posix.isDirectory(path) { return false }
        try createDirectory(path, mode: directoryMode(groupAccess: groupAccess))
        return true
    }

    private static func createDirectory(_ path: String, mode: mode_t) throws {
        if Posix.isDirectory(path) { return }
        let parent = Posix.parentDirectory(path)
        if !parent.isEmpty && parent != path && !Posix.isDirectory(parent) { try createDirectory(parent, mode: 0o755) }
        if mkdir(path, mode) != 0 {
            if errno == EEXIST && Posix.isDirectory(path) { return }  // made meanwhile
            if errno == EEXIST { throw BackyError(.io, "cannot create job directory \(path): it exists and is not a directory") }
            throw BackyError.posix("cannot create job directory \(path)")
        }
        // mkdir's mode is masked by the umask: set it exactly.
        if chmod(path, mode) != 0 { throw BackyError.posix("cannot set the mode of \(path)") }
    }

    /// Creates the job directory (if needed) and writes `config`; refuses to
    /// overwrite an existing config.
    @discardableResult
    public static func initialize(path: String, source: YAMLMap, groupAccess: Bool = false,
                                  logger: Logger = Logger(label: "backy")) throws -> Job {
        try refuseExistingConfig(path: path)
        try createDirectory(path, groupAccess: groupAccess)
        let cfg = path + "/config"
        try writeConfig(path: cfg, source: source)
        let job = try Job(path: path, logger: logger)
        try job.backend.prepare()
        return job
    }

    /// Throws if `path` already holds a job `config` (`init` never
    /// overwrites one).
    public static func refuseExistingConfig(path: String) throws {
        let cfg = path + "/config"
        if Posix.linkStatus(cfg) != nil {
            throw BackyError(.usage, "Refusing to initialize with existing config \(cfg).")
        }
    }

    /// Writes a job `config` (flow style, one line, keys sorted, like 2.4).
    public static func writeConfig(path: String, source: YAMLMap) throws {
        try Posix.writeFileAtomically(path, Array((YAML.flow(.map(source)) + "\n").utf8), mode: 0o440)
    }
}
