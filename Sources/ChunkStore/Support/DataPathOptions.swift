// DataPathOptions: how backup, restore, verify and upgrade use the machine:
// worker threads, the zstd level of new chunks, and whether restores go
// through the page cache. The command line builds them once (BACKY_THREADS,
// BACKY_ZSTD_LEVEL, BACKY_RESTORE_BUFFERED) and passes them down; library
// code never reads the environment.
import Foundation

public struct DataPathOptions: Sendable, Equatable {
    public static let defaultZstdLevel: Int32 = 1

    /// Worker threads of backup, restore and verify.
    public var threads: Int
    /// zstd level of new chunks.
    public var zstdLevel: Int32
    /// Restores write files and block devices through the page cache
    /// instead of with direct I/O.
    public var restoreBuffered: Bool

    public init(threads: Int = Parallel.cores, zstdLevel: Int32 = DataPathOptions.defaultZstdLevel,
                restoreBuffered: Bool = false) {
        self.threads = max(1, threads)
        self.zstdLevel = zstdLevel
        self.restoreBuffered = restoreBuffered
    }
}
