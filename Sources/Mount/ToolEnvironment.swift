// ToolEnvironment: where mounts and drills find their helper programs
// (fuse2fs, mount, fusermount3, the checkers: $PATH and the sbin
// directories) and make private mount points ($TMPDIR). The command line
// sets it once at start-up; the library never reads the environment.

public struct ToolEnvironment: Sendable {
    public var searchPath: [String]
    public var temporaryDirectory: String

    public init(searchPath: [String] = ["/usr/bin", "/bin"], temporaryDirectory: String = "/tmp") {
        self.searchPath = searchPath
        self.temporaryDirectory = temporaryDirectory
    }

    /// What this process uses (set by the command line before any mount).
    // nonisolated(unsafe): set once by the command line (main) before any mount or thread starts; only read after.
    nonisolated(unsafe) public static var current = ToolEnvironment()
}
