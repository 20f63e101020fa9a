// MetricsHTTPServer: a tiny HTTP/1.1 responder on SwiftNIO for Prometheus:
// GET (or HEAD) /metrics answers the text exposition, anything else 404 or
// 405; every response closes the connection. Limits: at most
// `maxConnections` clients (more get 503 and are closed), 10 s to send a
// request, request heads and bodies bounded (NIOHTTP1's header limit, 64 KiB
// of body), and one rendering at a time, off the event loop.

import ChunkStore
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServerSupport

// @unchecked Sendable: `channels` is changed only by start() and stop() (one thread in turn); the connection count is `Locked`.
public final class MetricsHTTPServer: @unchecked Sendable {
    public static let maxConnections = 16
    public static let requestTimeout: TimeAmount = .seconds(10)
    static let maxBody = 64 * 1024

    let log: Logger
    /// Renders the metrics text (called on `renderQueue`).
    let render: @Sendable () -> String
    let renderQueue = DispatchQueue(label: "backy-metrics-render")
    let connections = Locked(0)
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channels: [Channel] = []

    public init(log: Logger, render: @escaping @Sendable () -> String) {
        self.log = log
        self.render = render
    }

    /// Listens on each address; returns the bound port of the first, or
    /// throws a ListenError naming the address that failed.
    @discardableResult
    public func start(addresses: [String], port: Int) throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(IdleStateHandler(readTimeout: MetricsHTTPServer.requestTimeout))
                    try sync.addHandler(MetricsHTTPHandler(server: self))
                }
            }
        var bound = port
        for (i, addr) in addresses.enumerated() {
            do {
                let ch = try bootstrap.bind(host: addr, port: i == 0 ? port : bound).wait()
                if i == 0 { bound = ch.localAddress?.port ?? port }
                channels.append(ch)
            } catch {
                stop()
                throw ListenError(address: ListenError.address(addr, i == 0 ? port : bound), error)
            }
        }
        return bound
    }

    public func stop() {
        for c in channels { try? c.close().wait() }
        channels.removeAll()
        try? group.syncShutdownGracefully()
    }
}

// @unchecked Sendable: a channel handler; its state is touched only on its channel's event loop (the render result comes back through `NIOLoopBound`).
final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let server: MetricsHTTPServer
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    private var admitted = false
    private var answered = false

    init(server: MetricsHTTPServer) {
        self.server = server
    }

    func channelActive(context: ChannelHandlerContext) {
        admitted = server.connections.with { n in
            guard n < MetricsHTTPServer.maxConnections else { return false }
            n += 1
            return true
        }
        context.fireChannelActive()
        if !admitted {
            respond(context, .serviceUnavailable, "Too many connections (at most \(MetricsHTTPServer.maxConnections)); try again later.\n", head: false)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if admitted { server.connections.with { $0 -= 1 } }
        admitted = false
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body(let b):
            bodyBytes += b.readableBytes
            if bodyBytes > MetricsHTTPServer.maxBody && !answered {
                respond(context, .payloadTooLarge, "Request body too large.\n", head: false)
            }
        case .end:
            guard let h = head, !answered, admitted else { return }
            let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
            guard path == "/metrics" else {
                respond(context, .notFound, "Not found: the metrics are at /metrics\n", head: h.method == .HEAD)
                return
            }
            guard h.method == .GET || h.method == .HEAD else {
                respond(context, .methodNotAllowed, "Only GET and HEAD\n", head: false, extra: [("Allow", "GET, HEAD")])
                return
            }
            answered = true
            let loop = context.eventLoop
            let ctx = NIOLoopBound(context, eventLoop: loop)
            let isHead = h.method == .HEAD
            let render = server.render
            server.renderQueue.async {
                let text = render()
                loop.execute {
                    self.answered = false
                    self.respond(ctx.value, .ok, text, head: isHead,
                                 contentType: "text/plain; version=0.0.4; charset=utf-8")
                }
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: String, head isHead: Bool,
                         contentType: String = "text/plain; charset=utf-8", extra: [(String, String)] = []) {
        guard !answered else { return }
        answered = true
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(body.utf8.count)),
                                   ("Connection", "close")])
        for (k, v) in extra { headers.add(name: k, value: v) }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !isHead {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
