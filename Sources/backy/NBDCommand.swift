// NBDCommand: `backy nbd-server`: serve the job's complete revisions as NBD
// exports until SIGINT/SIGTERM. The server lives in the NBDServer module.
import ArgumentParser
import ChunkStore
import Foundation
import NBDServer

struct NBDServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nbd-server",
        abstract: "Serve the job's revisions as NBD exports (read-only by default).",
        discussion: """
            Every complete revision is an export named by its id; any revision spec (number from \
            newest, id, tag, last/latest) is accepted as export name, and the empty name means the \
            newest revision. Example: nbdinfo --list nbd://127.0.0.1:9000 ; \
            nbdcopy nbd://127.0.0.1:9000/latest disk.raw ; nbd-client -N <rev> localhost 9000 /dev/nbd0. \
            Stops on SIGINT or SIGTERM.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("H"), .customLong("host")], help: "Address to listen on.")
    var host = "127.0.0.1"
    @Option(name: [.customShort("p"), .customLong("port")], help: "TCP port to listen on (0: any free port).")
    var port = 9000
    @Flag(name: .customLong("writable"), help: "Accept writes into a throwaway copy-on-write overlay per connection (the backup is never changed; the overlay is gone when the client disconnects).")
    var writable = false
    @Option(name: .customLong("cache-mib"), help: "Memory for decoded chunks shared by all clients, in MiB (4 MiB per chunk).")
    var cacheMiB = 64
    @Option(name: .customLong("overlay-dir"), help: "Directory for the (unlinked) overlay files of --writable; default $TMPDIR or /var/tmp.")
    var overlayDir: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("port must be 0...65535") }
        guard cacheMiB >= 4 else { throw ValidationError("--cache-mib must be at least 4") }
    }

    func run() throws {
        try Operation.run(global) { log in
            let job = try Operation.openJob(global, log: log)
            var cfg = NBDServerConfig.fromEnvironment()
            cfg.host = host
            cfg.port = port
            cfg.writable = writable
            cfg.cacheChunks = max(1, cacheMiB / 4)
            if let d = overlayDir { cfg.overlayDirectory = d }
            let exports = JobExports(job: job, log: log)
            let n = (try? exports.list().count) ?? 0
            let server = NBDServer(provider: exports, config: cfg, log: log)
            let bound = try server.start()
            log.info("NBD server for \(job.path) listening on \(host):\(bound), \(n) revision\(n == 1 ? "" : "s"), \(writable ? "writable overlays" : "read-only")")
            server.runUntilSignalled()
            return 0
        }
    }
}
