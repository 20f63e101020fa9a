// BackyEnvironment: the one place that reads the process environment. The
// command line reads it once and passes what it found down as option
// structs; library code never reads it. BACKY_THREADS, BACKY_ZSTD_LEVEL and
// BACKY_RESTORE_BUFFERED (DataPathOptions), BACKY_RBD_READAHEAD, CEPH_ARGS
// and CEPH_CONF (SourceOptions), BACKY_NBD_WORKERS, BACKY_NBD_READAHEAD,
// BACKY_NBD_INFLIGHT_MIB and BACKY_NBD_EVENT_LOOPS (NBDServerConfig),
// BACKY_CMD (the binary the scheduler runs), TMPDIR and PATH (overlays,
// private mount points, helper programs), BACKY_CRASH_AT (tests only,
// CrashPoints).
import ChunkStore
import Foundation
import Rados
import Mount
import NBDServer
import SourcesPlugins

enum BackyEnvironment {
    static let values = ProcessInfo.processInfo.environment

    private static func int(_ key: String) -> Int? { values[key].flatMap { Int($0) } }

    /// Worker threads (BACKY_THREADS, default: the cores), the zstd level
    /// of new chunks (BACKY_ZSTD_LEVEL, default 1), restores through the
    /// page cache (BACKY_RESTORE_BUFFERED set to anything).
    static let dataPath: DataPathOptions = {
        var o = DataPathOptions()
        if let n = int("BACKY_THREADS"), n > 0 { o.threads = n }
        if let s = values["BACKY_ZSTD_LEVEL"], let v = Int32(s) { o.zstdLevel = v }
        o.restoreBuffered = values["BACKY_RESTORE_BUFFERED"] != nil
        return o
    }()

    /// The Ceph source's read-ahead (BACKY_RBD_READAHEAD chunks, default 8)
    /// and how librados finds the cluster (CEPH_ARGS, CEPH_CONF).
    static let sources: SourceOptions = {
        var o = SourceOptions()
        if let n = int("BACKY_RBD_READAHEAD"), n > 0 { o.rbdReadAhead = n }
        o.ceph = CephEnvironment(cephArgs: values["CEPH_ARGS"] ?? "", cephConf: values["CEPH_CONF"])
        return o
    }()

    /// The NBD server's defaults with the tuning knobs (docs/nbd.md):
    /// BACKY_NBD_WORKERS, BACKY_NBD_READAHEAD (chunks),
    /// BACKY_NBD_INFLIGHT_MIB, BACKY_NBD_EVENT_LOOPS; overlays in $TMPDIR
    /// (else /var/tmp).
    static func nbdServerConfig() -> NBDServerConfig {
        var c = NBDServerConfig()
        if let d = values["TMPDIR"] { c.overlayDirectory = d }
        if let v = int("BACKY_NBD_WORKERS"), v > 0 { c.workers = v }
        if let v = int("BACKY_NBD_READAHEAD"), v >= 0 { c.readAhead = v }
        if let v = int("BACKY_NBD_INFLIGHT_MIB"), v > 0 { c.maxInflightBytes = v << 20 }
        if let v = int("BACKY_NBD_EVENT_LOOPS"), v > 0 { c.eventLoops = v }
        return c
    }

    /// $PATH as a list of directories.
    static var searchPath: [String] {
        (values["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
    }

    /// Where mounts and drills find their helper programs and make private
    /// mount points ($TMPDIR, else /tmp).
    static var tools: ToolEnvironment {
        var t = values["TMPDIR"] ?? "/tmp"
        if t.isEmpty { t = "/tmp" }
        return ToolEnvironment(searchPath: searchPath, temporaryDirectory: t)
    }

    /// BACKY_CMD, the binary the scheduler runs (default: itself).
    static var backyCommand: String? {
        guard let c = values["BACKY_CMD"], !c.isEmpty else { return nil }
        return c
    }

    /// BACKY_CRASH_AT=name[:n] (tests only): die at a named step of a
    /// backup's durable writes (CrashPoints).
    static var crashAt: String? {
        guard let s = values["BACKY_CRASH_AT"], !s.isEmpty else { return nil }
        return s
    }
}
