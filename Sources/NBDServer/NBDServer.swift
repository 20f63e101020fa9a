// NBDServer: `backy nbd-server`. Listens on a TCP address and serves the
// exports of an ExportProvider (the complete revisions of a job) over the
// NBD protocol on SwiftNIO: plain channel handlers on the event loop, chunk
// reads on a small pool of worker threads, one decoded-chunk cache shared by
// all connections. Stops cleanly on SIGINT/SIGTERM: stops listening, lets
// in-flight requests finish, closes the connections and removes their pins.
import ChunkStore
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix

public struct NBDServerConfig: Sendable {
    public var host = "127.0.0.1"
    public var port = 9000
    /// Per-connection throwaway copy-on-write overlays instead of read-only exports.
    public var writable = false
    /// Where overlay files are created (and unlinked at once).
    public var overlayDirectory = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/var/tmp"
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
    public var maxConnections = 64
    /// Seconds a client may take to choose an export.
    public var handshakeTimeout = 60
    /// Seconds to let in-flight requests finish when stopping.
    public var shutdownGrace = 10.0

    public init() {}

    /// The defaults, with tuning overrides from the environment:
    /// BACKY_NBD_WORKERS, BACKY_NBD_READAHEAD (chunks), BACKY_NBD_INFLIGHT_MIB,
    /// BACKY_NBD_EVENT_LOOPS.
    public static func fromEnvironment() -> NBDServerConfig {
        var c = NBDServerConfig()
        let env = ProcessInfo.processInfo.environment
        func int(_ k: String) -> Int? { env[k].flatMap { Int($0) } }
        if let v = int("BACKY_NBD_WORKERS"), v > 0 { c.workers = v }
        if let v = int("BACKY_NBD_READAHEAD"), v >= 0 { c.readAhead = v }
        if let v = int("BACKY_NBD_INFLIGHT_MIB"), v > 0 { c.maxInflightBytes = v << 20 }
        if let v = int("BACKY_NBD_EVENT_LOOPS"), v > 0 { c.eventLoops = v }
        return c
    }
}

/// What every connection shares.
final class ServerCore: @unchecked Sendable {
    let provider: ExportProvider
    let config: NBDServerConfig
    let log: Logger
    let pool: WorkerPool
    let cache: ChunkCache
    let control = DispatchQueue(label: "backy-nbd-control", attributes: .concurrent)
    let connections = Locked<[Int: NBDConnection]>([:])
    let nextID = Locked(0)
    let stopping = Locked(false)

    init(provider: ExportProvider, config: NBDServerConfig, log: Logger) {
        self.provider = provider
        self.config = config
        self.log = log
        pool = WorkerPool(threads: config.workers)
        ChunkMemory.setFreeListLimit(2)
        cache = ChunkCache(capacity: config.cacheChunks, pool: pool)
    }
}

public final class NBDServer: @unchecked Sendable {
    let core: ServerCore
    let group: MultiThreadedEventLoopGroup
    private var serverChannel: Channel?
    private let finished = DispatchSemaphore(value: 0)
    private let stopOnce = Locked(false)

    public var config: NBDServerConfig { core.config }
    public var cache: ChunkCache { core.cache }

    public init(provider: ExportProvider, config: NBDServerConfig, log: Logger) {
        core = ServerCore(provider: provider, config: config, log: log)
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, config.eventLoops))
    }

    /// Binds and starts accepting; returns the bound port (useful with port 0).
    @discardableResult
    public func start() throws -> Int {
        let core = self.core
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 2 << 20, high: 8 << 20))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let control = NBDDecoderControl()
                    let conn = NBDConnection(core: core, control: control, eventLoop: channel.eventLoop)
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(NBDDecoder(control: control),
                                                             maximumBufferSize: NBDLimits.maxRequest + (1 << 20)))
                    try sync.addHandler(conn)
                }
            }
        let ch: Channel
        do {
            ch = try bootstrap.bind(host: core.config.host, port: core.config.port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            core.pool.shutdown()
            throw BackyError(.io, "cannot listen on \(core.config.host):\(core.config.port): \(error)")
        }
        serverChannel = ch
        return ch.localAddress?.port ?? core.config.port
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
        try? serverChannel?.close().wait()
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
}
