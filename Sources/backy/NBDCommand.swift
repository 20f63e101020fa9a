// NBDCommand: `backy nbd-server`: serve a job's complete revisions (`-b`),
// or every job of a configuration (`-c`, export names JOB/REV), as NBD
// exports until SIGINT/SIGTERM; and the same server run inside the
// scheduler (`nbd-server: {in-scheduler: true}`), injected into the daemon
// as a DaemonService. The server lives in the NBDServer module; this file
// only maps options and configuration keys onto its configuration.
import ArgumentParser
import ChunkStore
import Foundation
import Logging
import NBDServer
import Scheduler

struct NBDServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nbd-server",
        abstract: "Serve revisions as NBD exports (read-only by default).",
        discussion: """
            With -b DIR (default: the current directory) every complete revision of that job is an \
            export named by its id; any revision spec (number from newest, id, tag, last/latest) is \
            accepted, and the empty name means the newest revision. With -c CONFIG every job of the \
            scheduler's configuration is served, export names JOB/REV (JOB alone: its newest \
            revision); the config's nbd-server section gives the defaults of the options below. \
            Examples: nbdinfo --list nbd://127.0.0.1:9000 ; nbdcopy nbd://127.0.0.1:9000/latest disk.raw ; \
            nbdinfo --list 'nbd+unix:///?socket=/run/backy/nbd.sock' ; \
            nbdcopy 'nbds://127.0.0.1:9000/vm1/latest?tls-certificates=/etc/pki/backy' disk.raw. \
            Limits: connections beyond --max-connections take the slot of an idle one or get an \
            error reply; clients that do not finish the handshake in time, stay idle, or do not read \
            their replies are disconnected; replies waiting to be sent share --buffer-mib. \
            Stops on SIGINT or SIGTERM.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("c"), .customLong("config")], help: ArgumentHelp("Serve every job of this scheduler configuration (export names JOB/REV) instead of the job of -b.", valueName: "CONFIG"))
    var config: String?
    @Option(name: [.customShort("H"), .customLong("host")], help: "Address to listen on (default 127.0.0.1; with --unix only if given).")
    var host: String?
    @Option(name: [.customShort("p"), .customLong("port")], help: "TCP port to listen on (default 9000; 0: any free port).")
    var port: Int?
    @Option(name: .customLong("unix"), help: ArgumentHelp("Listen on this Unix socket (mode 0660); no TCP unless -H or -p is given too.", valueName: "PATH"))
    var unix: String?
    @Option(name: .customLong("unix-group"), help: ArgumentHelp("Group of the Unix socket (whose members may connect).", valueName: "GROUP"))
    var unixGroup: String?
    @Option(name: .customLong("tls"), help: ArgumentHelp("off: no TLS; on: TLS for clients that ask (NBD_OPT_STARTTLS); require: TLS only.", valueName: "off|on|require"))
    var tls: String?
    @Option(name: .customLong("tls-certificates"), help: ArgumentHelp("Directory with server-cert.pem and server-key.pem (nbdkit's layout).", valueName: "DIR"))
    var tlsCertificates: String?
    @Option(name: .customLong("tls-psk"), help: ArgumentHelp("Pre-shared keys, one 'identity:hexkey' per line (psktool's format).", valueName: "FILE"))
    var tlsPSK: String?
    @Flag(name: .customLong("writable"), help: "Accept writes into a throwaway copy-on-write overlay per connection (the backup is never changed; the overlay is gone when the client disconnects).")
    var writable = false
    @Option(name: .customLong("cache-mib"), help: "Memory for decoded chunks shared by all clients, in MiB (4 MiB per chunk; default 64).")
    var cacheMiB: Int?
    @Option(name: .customLong("buffer-mib"), help: "Memory for replies not yet sent and write data, shared by all clients, in MiB (default 40, at least 40).")
    var bufferMiB: Int?
    @Option(name: .customLong("overlay-dir"), help: "Directory for the (unlinked) overlay files of --writable; default $TMPDIR or /var/tmp.")
    var overlayDir: String?
    @Option(name: .customLong("overlay-mib"), help: "Disk space all overlays of --writable may use together, in MiB (default 1024); a write beyond it fails with ENOSPC.")
    var overlayMiB: Int?
    @Option(name: .customLong("max-connections"), help: "Connections served at once (default 64).")
    var maxConnections: Int?
    @Option(name: .customLong("handshake-timeout"), help: "Seconds a client may take to choose an export (default 10).")
    var handshakeTimeout: Int?
    @Option(name: .customLong("idle-timeout"), help: "Seconds a client may stay idle after choosing an export (default 600; 0: no limit).")
    var idleTimeout: Int?

    func validate() throws {
        if let p = port, !(0...65535).contains(p) { throw ValidationError("port must be 0...65535") }
        if let c = cacheMiB, c < 4 { throw ValidationError("--cache-mib must be at least 4") }
        if let b = bufferMiB, b < 40 { throw ValidationError("--buffer-mib must be at least 40") }
        if let o = overlayMiB, o < 1 { throw ValidationError("--overlay-mib must be at least 1") }
        if let m = maxConnections, m < 1 { throw ValidationError("--max-connections must be at least 1") }
        if let h = handshakeTimeout, h < 1 { throw ValidationError("--handshake-timeout must be at least 1") }
        if let i = idleTimeout, i < 0 { throw ValidationError("--idle-timeout must not be negative") }
        if let t = tls, NBDTLSMode(rawValue: t) == nil { throw ValidationError("--tls must be off, on or require") }
        if config != nil && (global.backupdir ?? GlobalOptions.leading.backupdir) != nil {
            throw ValidationError("give -b DIR (one job) or -c CONFIG (every job), not both")
        }
    }

    /// The server configuration: options over the config's nbd-server
    /// section over the defaults.
    func serverConfig(_ s: NBDSettings) -> NBDServerConfig {
        NBDServerSettings.make(s, host: host, port: port, unix: unix, unixGroup: unixGroup, tls: tls,
                               tlsCertificates: tlsCertificates, tlsPSK: tlsPSK, writable: writable ? true : nil,
                               cacheMiB: cacheMiB, bufferMiB: bufferMiB, overlayDir: overlayDir, overlayMiB: overlayMiB,
                               maxConnections: maxConnections, handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout)
    }

    func run() throws {
        try Operation.run(global) { log in
            let provider: ExportProvider
            let cfg: NBDServerConfig
            let what: String
            if let config {
                let sc = try SchedulerConfig.load(path: config)
                cfg = serverConfig(sc.nbd)
                provider = MultiJobExports(jobs: NBDServerSettings.jobs(sc), log: log)
                what = "\(sc.jobs.count) job\(sc.jobs.count == 1 ? "" : "s") of \(sc.path) (export names JOB/REV)"
            } else {
                let job = try Operation.openJob(global, log: log)
                cfg = serverConfig(NBDSettings())
                let exports = JobExports(job: job, log: log)
                provider = exports
                let n = (try? exports.list().count) ?? 0
                what = "\(job.path), \(n) revision\(n == 1 ? "" : "s")"
            }
            let server = NBDServer(provider: provider, config: cfg, log: log)
            let bound = try server.start()
            log.info("NBD server for \(what) listening on \(NBDServerSettings.listeners(cfg, port: bound)), \(cfg.writable ? "writable overlays" : "read-only"), \(server.summary)")
            server.runUntilSignalled()
            return 0
        }
    }
}

/// Maps the configuration's nbd-server section (and command line options)
/// onto the server's configuration.
enum NBDServerSettings {
    static func make(_ s: NBDSettings, host: String? = nil, port: Int? = nil, unix: String? = nil, unixGroup: String? = nil,
                     tls: String? = nil, tlsCertificates: String? = nil, tlsPSK: String? = nil, writable: Bool? = nil,
                     cacheMiB: Int? = nil, bufferMiB: Int? = nil, overlayDir: String? = nil, overlayMiB: Int? = nil,
                     maxConnections: Int? = nil, handshakeTimeout: Int? = nil, idleTimeout: Int? = nil) -> NBDServerConfig {
        var c = BackyEnvironment.nbdServerConfig()
        let sock = unix ?? s.unix
        c.unixPath = sock.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
        c.unixGroup = unixGroup ?? s.unixGroup
        // With a Unix socket, TCP only if an address or port is given.
        let h = host ?? s.host
        let p = port ?? s.port
        if c.unixPath != nil && h == nil && p == nil {
            c.host = nil
        } else {
            c.host = (h ?? "127.0.0.1").isEmpty ? nil : (h ?? "127.0.0.1")
        }
        c.port = p ?? 9000
        c.tlsMode = NBDTLSMode(rawValue: tls ?? s.tls ?? "off") ?? .off
        c.tlsCertificates = tlsCertificates ?? s.tlsCertificates
        c.tlsPSKFile = tlsPSK ?? s.tlsPSK
        c.writable = writable ?? s.writable ?? false
        if let m = cacheMiB ?? s.cacheMiB { c.cacheChunks = max(1, m / 4) }
        if let m = bufferMiB ?? s.bufferMiB { c.replyBudget = m << 20 }
        if let d = overlayDir ?? s.overlayDir { c.overlayDirectory = d }
        if let m = overlayMiB ?? s.overlayMiB { c.overlayLimit = UInt64(m) << 20 }
        if let m = maxConnections ?? s.maxConnections { c.maxConnections = m }
        if let t = handshakeTimeout ?? s.handshakeTimeout { c.handshakeTimeout = t }
        if let t = idleTimeout ?? s.idleTimeout { c.idleTimeout = t }
        return c
    }

    /// Job name → job directory.
    static func jobs(_ sc: SchedulerConfig) -> [String: String] {
        var m: [String: String] = [:]
        for j in sc.jobs { m[j.name] = sc.baseDir + "/" + j.name }
        return m
    }

    static func listeners(_ c: NBDServerConfig, port: Int) -> String {
        var l: [String] = []
        if let h = c.host { l.append("\(h):\(port)") }
        if let u = c.unixPath { l.append(u) }
        return l.joined(separator: " and ")
    }
}

/// The scheduler's in-process NBD server (`nbd-server: {in-scheduler: true}`):
/// every job of the configuration, following reloads.
final class NBDInScheduler: DaemonService {
    let log: Logger
    private var server: NBDServer?
    private var exports: MultiJobExports?

    init(log: Logger) {
        self.log = log
    }

    func start(_ config: SchedulerConfig) throws {
        guard config.nbd.inScheduler else { return }
        let cfg = NBDServerSettings.make(config.nbd)
        let exports = MultiJobExports(jobs: NBDServerSettings.jobs(config), log: log)
        let server = NBDServer(provider: exports, config: cfg, log: log)
        let bound = try server.start()
        log.info("NBD server for every job (export names JOB/REV) listening on \(NBDServerSettings.listeners(cfg, port: bound)), \(cfg.writable ? "writable overlays" : "read-only"), \(server.summary)")
        self.server = server
        self.exports = exports
    }

    func reload(_ config: SchedulerConfig) {
        exports?.update(jobs: NBDServerSettings.jobs(config))
    }

    func stop() {
        server?.stop()
        server = nil
    }
}
