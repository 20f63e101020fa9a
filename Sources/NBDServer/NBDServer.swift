// NBDServer: `backy nbd-server`. Listens on a TCP address and/or a Unix
// socket and serves the exports of an ExportProvider (the complete
// revisions of a job, or of every job of a configuration) over the NBD
// protocol on SwiftNIO: plain channel handlers on the event loop, chunk
// reads on a small pool of worker threads, one decoded-chunk cache shared by
// all connections, TLS through NBD_OPT_STARTTLS. Its limits: a connection
// table with a cap, idle eviction and timeouts (ConnectionSlots), one memory
// budget for unsent replies (ReplyBudget), one disk budget for writable
// overlays (OverlaySpace). Stops cleanly on SIGINT/SIGTERM: stops listening,
// lets in-flight requests finish, closes the connections and removes their
// pins.
import ChunkStore
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServerSupport

public struct NBDServerConfig: Sendable {
    /// TCP address; nil: no TCP listener.
    public var host: String? = "127.0.0.1"
    public var port = 9000
    /// Unix socket path (mode 0660, group `unixGroup`); nil: none.
    public var unixPath: String?
    public var unixGroup: String?
    public var tlsMode = NBDTLSMode.off
    public var tlsCertificates: String?
    public var tlsPSKFile: String?
    /// Per-connection throwaway copy-on-write overlays instead of read-only exports.
    public var writable = false
    /// Where overlay files are created (and unlinked at once); the command
    /// line sets $TMPDIR.
    public var overlayDirectory = "/var/tmp"
    /// Disk space all overlays together may use.
    public var overlayLimit: UInt64 = 1 << 30
    /// Decoded chunks kept in memory (4 MiB each).
    public var cacheChunks = 16
    /// Chunks read ahead of a sequential reader.
    public var readAhead = 2
    /// Threads that read chunks.
    public var workers = max(2, ProcessInfo.processInfo.activeProcessorCount)
    public var eventLoops = 1
    /// Requests one connection may have in flight.
    public var maxInflightRequests = 64
    /// Bytes (reply data, write payloads) one connection may hold before
    /// the server stops reading its requests.
    public var maxInflightBytes = 32 * 1024 * 1024
    /// Bytes all connections together may hold for unsent replies and write payloads.
    public var replyBudget = 40 * 1024 * 1024
    public var maxConnections = 64
    /// Seconds a client may take to choose an export.
    public var handshakeTimeout = 10
    /// Seconds a connection may be idle after choosing an export (0: forever).
    public var idleTimeout = 600
    /// Seconds a client may leave its replies unread (2 s while other
    /// clients wait for memory).
    public var stallTimeout = 60
    /// Seconds to let in-flight requests finish when stopping.
    public var shutdownGrace = 10.0

    /// The defaults; the command line applies the tuning knobs of the
    /// environment (docs/nbd.md).
    public init() {}
}

/// What every connection shares.
// @unchecked Sendable: `tls` is set once in NBDServer.start(), before any listener accepts; everything else is `let`, Sendable or `Locked`.
final class ServerCore: @unchecked Sendable {
    let provider: ExportProvider
    let config: NBDServerConfig
    let log: Logger
    let pool: WorkerPool
    let cache: ChunkCache
    let control = DispatchQueue(label: "backy-nbd-control", attributes: .concurrent)
    /// Every open connection (admitted or being refused), for stopping.
    let connections = Locked<[Int: NBDConnectionHandle]>([:])
    let slots: ConnectionSlots<NBDConnectionHandle>
    let budget: ReplyBudget
    let overlaySpace: OverlaySpace
    let refusals: RefusalLog
    /// Refused connections still open (they get an error reply, then close).
    let refusing = Locked(0)
    /// Set by `start()` before the first connection.
    var tls: NBDTLS?
    let nextID = Locked(0)
    let stopping = Locked(false)

    init(provider: ExportProvider, config: NBDServerConfig, log: Logger) {
        self.provider = provider
        self.config = config
        self.log = log
        pool = WorkerPool(threads: config.workers)
        ChunkMemory.setFreeListLimit(2)
        cache = ChunkCache(capacity: config.cacheChunks, pool: pool)
        let budget = ReplyBudget(limit: config.replyBudget)
        self.budget = budget
        overlaySpace = OverlaySpace(limit: config.overlayLimit)
        refusals = RefusalLog(log: log, what: "NBD server")
        slots = ConnectionSlots(policy: SlotPolicy(limit: config.maxConnections,
                                                   handshakeTimeout: TimeInterval(config.handshakeTimeout),
                                                   idleTimeout: TimeInterval(config.idleTimeout),
                                                   stallTimeout: TimeInterval(config.stallTimeout)),
                                underPressure: { budget.underPressure(besides: $0) })
    }
}

// @unchecked Sendable: `serverChannels` is changed only by start() and read by the one stop() (`stopOnce`) after start() returned.
public final class NBDServer: @unchecked Sendable {
    let core: ServerCore
    let group: MultiThreadedEventLoopGroup
    private var serverChannels: [Channel] = []
    private let finished = DispatchSemaphore(value: 0)
    private let stopOnce = Locked(false)

    public var config: NBDServerConfig { core.config }
    public var cache: ChunkCache { core.cache }

    public init(provider: ExportProvider, config: NBDServerConfig, log: Logger) {
        core = ServerCore(provider: provider, config: config, log: log)
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, config.eventLoops))
    }

    /// What the server listens on and how, for the start-up log line.
    public var summary: String {
        var parts: [String] = []
        if let t = core.tls {
            parts.append("TLS \(t.mode == .require ? "required" : "offered") (\(t.summary))")
        } else {
            parts.append("no TLS")
        }
        parts.append("at most \(core.config.maxConnections) connections")
        return parts.joined(separator: ", ")
    }

    /// Loads the TLS setup (a bad one is a one-line error), binds and starts
    /// accepting; returns the bound TCP port (useful with port 0; 0 without TCP).
    @discardableResult
    public func start() throws -> Int {
        let core = self.core
        do {
            core.tls = try NBDTLS.load(mode: core.config.tlsMode, certificates: core.config.tlsCertificates,
                                       pskFile: core.config.tlsPSKFile)
        } catch let e as NBDTLSError {
            core.pool.shutdown()
            try? group.syncShutdownGracefully()
            throw BackyError(.usage, e.description)
        }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 2 << 20, high: 8 << 20))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if channel.localAddress?.protocol == .inet || channel.localAddress?.protocol == .inet6 {
                        try channel.syncOptions?.setOption(.tcpOption(.tcp_nodelay), value: 1)
                    }
                    let control = NBDDecoderControl()
                    let kick = NBDDecodeKick()
                    let conn = NBDConnection(core: core, control: control, kick: kick, eventLoop: channel.eventLoop)
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(kick)
                    try sync.addHandler(ByteToMessageHandler(NBDDecoder(control: control),
                                                             maximumBufferSize: NBDLimits.maxRequest + (1 << 20)))
                    try sync.addHandler(conn)
                }
            }
        var port = 0
        do {
            if let host = core.config.host {
                let ch: Channel
                do {
                    ch = try bootstrap.bind(host: host, port: core.config.port).wait()
                } catch {
                    throw BackyError(.io, ListenError(address: ListenError.address(host, core.config.port), error).description)
                }
                serverChannels.append(ch)
                port = ch.localAddress?.port ?? core.config.port
            }
            if let path = core.config.unixPath {
                do {
                    serverChannels.append(try UnixSocket.listen(path: path, group: core.config.unixGroup) { p in
                        try bootstrap.bind(unixDomainSocketPath: p).wait()
                    })
                } catch {
                    throw BackyError(.io, ListenError(address: path, error).description)
                }
            }
        } catch {
            for c in serverChannels { try? c.close().wait() }
            serverChannels = []
            try? group.syncShutdownGracefully()
            core.pool.shutdown()
            throw error
        }
        // Now and then the reply budget wakes a waiter it may have passed
        // over while readers turned into non-readers.
        let budget = core.budget
        core.slots.startSweeping(also: { budget.kick() })
        return port
    }

    /// Blocks until `stop()` has finished.
    public func wait() {
        finished.wait()
        finished.signal()
    }

    /// Runs until SIGINT or SIGTERM, then stops cleanly.
    public func runUntilSignalled() {
        let q = DispatchQueue(label: "backy-nbd-signals")
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: q)
            s.setEventHandler { [self] in
                core.log.info("Received \(sig == SIGINT ? "SIGINT" : "SIGTERM"), stopping the NBD server")
                DispatchQueue.global().async { self.stop() }
            }
            s.resume()
            sources.append(s)
        }
        wait()
        for s in sources { s.cancel() }
    }

    /// Stops listening, lets in-flight requests finish (up to the grace
    /// period), closes every connection and releases its pins.
    public func stop() {
        let first = stopOnce.with { s -> Bool in
            defer { s = true }
            return !s
        }
        guard first else {
            wait()
            return
        }
        core.stopping.with { $0 = true }
        for c in serverChannels { try? c.close().wait() }
        if let path = core.config.unixPath { UnixSocket.remove(path) }
        core.slots.stopSweeping()
        let conns = core.connections.with { Array($0.values) }
        for c in conns { c.beginShutdown() }
        let deadline = Date().addingTimeInterval(core.config.shutdownGrace)
        while !core.connections.with({ $0.isEmpty }) && Date() < deadline {
            usleep(20_000)
        }
        for c in core.connections.with({ Array($0.values) }) { c.forceClose() }
        while !core.connections.with({ $0.isEmpty }) && Date() < deadline.addingTimeInterval(2) {
            usleep(20_000)
        }
        core.pool.shutdown()
        try? group.syncShutdownGracefully()
        core.log.info("NBD server stopped")
        finished.signal()
    }

    /// Open connections (for tests).
    public var connectionCount: Int { core.connections.with { $0.count } }

    /// Bytes held for unsent replies and write payloads now, and at most so far.
    public var replyBytesHeld: Int { core.budget.held }
    public var replyBytesPeak: Int { core.budget.highWater }
    /// Disk space the writable overlays occupy now.
    public var overlayBytes: UInt64 { core.overlaySpace.inUse }
}
