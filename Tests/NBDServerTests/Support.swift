// Support: an in-memory image and export provider, an NBD server on a free
// port in this process, and a small blocking NBD client that speaks the
// protocol byte by byte (so tests can also send it broken).
import ChunkStore
import Foundation
import Logging
import NBDServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// An image held in memory with small chunks; some chunks are zero, some
/// can be marked damaged, and the next read of a chunk can be held until a
/// test releases it. Records any read outside the image.
final class MemoryImage: ImageReader, Sendable {
    let bytes: [UInt8]
    let imageSize: UInt64
    let chunkSize: Int
    let chunkCount: Int
    let zero: Set<Int>
    let damaged: Set<Int>
    let reads = Locked(0)
    let violations = Locked<[String]>([])
    private let holds = Locked<[Int: (gate: DispatchSemaphore, limit: Double)]>([:])

    init(size: Int, chunkSize: Int = 64 * 1024, zeroChunks: Set<Int> = [], damaged: Set<Int> = [], seed: UInt64 = 1) {
        var b = [UInt8](repeating: 0, count: size)
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<size {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            b[i] = UInt8(truncatingIfNeeded: s)
        }
        let count = (size + chunkSize - 1) / chunkSize
        for c in zeroChunks where c < count {
            for i in (c * chunkSize)..<min(size, (c + 1) * chunkSize) { b[i] = 0 }
        }
        bytes = b
        imageSize = UInt64(size)
        self.chunkSize = chunkSize
        chunkCount = count
        zero = zeroChunks
        self.damaged = damaged
    }

    /// The next read of chunk `i` waits until `gate` is signalled (at most
    /// `limit` seconds, so a test that waits in vain fails instead of hanging).
    func hold(_ i: Int, until gate: DispatchSemaphore, limit: Double = 5) {
        holds.with { $0[i] = (gate, limit) }
    }

    func isZero(_ i: Int) -> Bool { zero.contains(i) }
    func chunkName(_ i: Int) -> String { "mem-\(i)" }

    func read(_ i: Int, into out: UnsafeMutableRawBufferPointer, workspace: ChunkWorkspace) throws -> Int {
        guard i >= 0 && i < chunkCount else {
            violations.with { $0.append("read of chunk \(i) of \(chunkCount)") }
            throw ChunkReadError(id: .zero, fault: .missing)
        }
        if let (gate, limit) = holds.with({ $0.removeValue(forKey: i) }) {
            if gate.wait(timeout: .now() + limit) == .timedOut {
                violations.with { $0.append("read of chunk \(i) was held \(limit) s and never released") }
            }
        }
        reads.with { $0 += 1 }
        if damaged.contains(i) {
            throw ChunkReadError(id: .zero, fault: .hashMismatch(actual: ChunkID.zero.hex))
        }
        let len = length(of: i)
        guard out.count >= len else {
            violations.with { $0.append("buffer of \(out.count) for chunk \(i) of \(len)") }
            throw ChunkReadError(id: .zero, fault: .corrupt("short buffer"))
        }
        bytes.withUnsafeBytes { src in
            out.baseAddress!.copyMemory(from: src.baseAddress! + i * chunkSize, byteCount: len)
        }
        return len
    }
}

/// Exports over in-memory images: names "a", "b", …; "latest" and "" mean
/// the last one.
final class MemoryExports: ExportProvider, Sendable {
    let images: [(name: String, image: MemoryImage)]
    let opened = Locked(0)
    let closed = Locked(0)

    init(_ images: [(String, MemoryImage)]) { self.images = images.map { (name: $0.0, image: $0.1) } }

    func find(_ name: String) throws -> (name: String, image: MemoryImage) {
        if name.isEmpty || name == "latest", let l = images.last { return l }
        if let e = images.first(where: { $0.name == name }) { return e }
        throw ExportNotFound("unknown revision '\(name)'")
    }

    func list() throws -> [ExportInfo] {
        images.map { ExportInfo(name: $0.name, description: "memory image \($0.name)", size: $0.image.imageSize) }
    }

    func describe(_ name: String) throws -> ExportInfo {
        let e = try find(name)
        return ExportInfo(name: e.name, description: "memory image \(e.name)", size: e.image.imageSize)
    }

    func open(_ name: String) throws -> OpenExport {
        let e = try find(name)
        opened.with { $0 += 1 }
        return OpenExport(info: try describe(name), image: e.image) { [self] in closed.with { $0 += 1 } }
    }
}

enum TestServer {
    static let log: Logger = {
        var l = Logger(label: "nbd-test")
        l.logLevel = ProcessInfo.processInfo.environment["NBD_TEST_LOG"] != nil ? .debug : .critical
        return l
    }()

    /// Starts a server on a free port; stopped at the end of the test.
    static func start(_ test: XCTestCase, _ provider: ExportProvider, _ tweak: (inout NBDServerConfig) -> Void = { _ in }) throws -> (NBDServer, Int) {
        var cfg = NBDServerConfig()
        cfg.port = 0
        cfg.workers = 2
        cfg.cacheChunks = 8
        cfg.overlayDirectory = NSTemporaryDirectory()
        tweak(&cfg)
        let s = NBDServer(provider: provider, config: cfg, log: log)
        let port = try s.start()
        test.addTeardownBlock { s.stop() }
        return (s, port)
    }
}

/// A blocking NBD client over a raw socket.
final class RawClient {
    let fd: Int32
    var structured = false

    init?(port: Int, timeout: Double = 5) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            close(fd)
            return nil
        }
    }

    deinit { close(fd) }

    func setTimeout(_ t: Double) {
        var tv = timeval(tv_sec: Int(t), tv_usec: Int((t - Double(Int(t))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Exactly n bytes, or nil on EOF, error or timeout.
    func recv(_ n: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            let r = out.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + got, n - got, 0) }
            if r <= 0 { return nil }
            got += r
        }
        return out
    }

    /// Reads until EOF or timeout; returns the byte count and whether EOF was seen.
    func drain(limit: Int = 256 << 20) -> (bytes: Int, eof: Bool) {
        var buf = [UInt8](repeating: 0, count: 65536)
        var total = 0
        while total < limit {
            let r = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress!, $0.count, 0) }
            if r == 0 { return (total, true) }
            if r < 0 { return (total, errno == ECONNRESET) }  // closed with unread data: reset
            total += r
        }
        return (total, false)
    }

    // MARK: handshake

    /// Reads the greeting and sends client flags. Returns the handshake flags.
    func greet(flags: UInt32 = 3) -> UInt16? {
        guard let g = recv(18) else { return nil }
        guard be64(g, 0) == NBD.initMagic, be64(g, 8) == NBD.optMagic else { return nil }
        send(u32(flags))
        return be16(g, 16)
    }

    func option(_ code: UInt32, _ data: [UInt8] = []) {
        send(u64(NBD.optMagic) + u32(code) + u32(UInt32(data.count)) + data)
    }

    struct OptReply { var option: UInt32; var type: UInt32; var data: [UInt8] }

    func optionReply() -> OptReply? {
        guard let h = recv(20), be64(h, 0) == NBD.repMagic else { return nil }
        let len = Int(be32(h, 16))
        guard len <= 1 << 20, let d = len == 0 ? [] : recv(len) else { return nil }
        return OptReply(option: be32(h, 8), type: be32(h, 12), data: d)
    }

    /// Replies up to and including the final one (ACK or error).
    func optionReplies() -> [OptReply]? {
        var out: [OptReply] = []
        while let r = optionReply() {
            out.append(r)
            if r.type == NBD.repAck || r.type & 0x8000_0000 != 0 { return out }
        }
        return nil
    }

    static func infoData(_ name: String, _ infos: [UInt16] = []) -> [UInt8] {
        let n = Array(name.utf8)
        var d = u32(UInt32(n.count)) + n + u16(UInt16(infos.count))
        for i in infos { d += u16(i) }
        return d
    }

    static func metaData(_ name: String, _ queries: [String]) -> [UInt8] {
        let n = Array(name.utf8)
        var d = u32(UInt32(n.count)) + n + u32(UInt32(queries.count))
        for q in queries { d += u32(UInt32(q.utf8.count)) + Array(q.utf8) }
        return d
    }

    struct Export { var size: UInt64; var flags: UInt16 }

    /// Full negotiation with OPT_GO; nil if the server refused.
    func go(_ name: String, structured: Bool = true, meta: Bool = true) -> Export? {
        guard greet() != nil else { return nil }
        if structured {
            option(NBD.optStructuredReply)
            guard optionReply()?.type == NBD.repAck else { return nil }
            self.structured = true
            if meta {
                option(NBD.optSetMetaContext, Self.metaData(name, [NBDMetaContext.baseAllocation]))
                guard let r = optionReplies(), r.last?.type == NBD.repAck else { return nil }
            }
        }
        option(NBD.optGo, Self.infoData(name, [NBD.infoBlockSize]))
        guard let replies = optionReplies(), replies.last?.type == NBD.repAck else { return nil }
        for r in replies where r.type == NBD.repInfo && be16(r.data, 0) == NBD.infoExport {
            return Export(size: be64(r.data, 2), flags: be16(r.data, 10))
        }
        return nil
    }

    // MARK: transmission

    func request(_ type: UInt16, flags: UInt16 = 0, handle: UInt64, offset: UInt64, length: UInt32, payload: [UInt8] = []) {
        send(u32(NBD.requestMagic) + u16(flags) + u16(type) + u64(handle) + u64(offset) + u32(length) + payload)
    }

    struct Reply {
        var handle: UInt64
        var error: UInt32 = 0
        var message = ""
        /// READ data assembled from the reply (zero-filled holes).
        var data: [UInt8] = []
        var extents: [NBDExtent] = []
        var chunkTypes: [UInt16] = []
    }

    /// Reads one complete reply. `readLengths` maps READ handles to their
    /// lengths (simple replies carry no length); `offsets` their offsets.
    func reply(readLengths: [UInt64: (offset: UInt64, length: Int)] = [:]) -> Reply? {
        guard let m = recv(4) else { return nil }
        let magic = be32(m, 0)
        if magic == NBD.simpleReplyMagic {
            guard let h = recv(12) else { return nil }
            var r = Reply(handle: be64(h, 4), error: be32(h, 0))
            if r.error == 0, let rl = readLengths[r.handle] {
                guard let d = rl.length == 0 ? [] : recv(rl.length) else { return nil }
                r.data = d
            }
            return r
        }
        guard magic == NBD.structuredReplyMagic else { return nil }
        var r: Reply?
        var first = true
        while true {
            if !first {
                guard let mb = recv(4), be32(mb, 0) == NBD.structuredReplyMagic else { return nil }
            }
            first = false
            guard let h = recv(16) else { return nil }
            let flags = be16(h, 0), type = be16(h, 2), handle = be64(h, 4), len = Int(be32(h, 12))
            if r == nil {
                r = Reply(handle: handle)
                if let rl = readLengths[handle] { r!.data = [UInt8](repeating: 0xEE, count: rl.length) }
            }
            guard handle == r!.handle, len <= 64 << 20, let p = len == 0 ? [] : recv(len) else { return nil }
            r!.chunkTypes.append(type)
            switch type {
            case NBD.replyTypeNone:
                break
            case NBD.replyTypeOffsetData:
                let off = be64(p, 0)
                guard let base = readLengths[handle]?.offset, off >= base, Int(off - base) + len - 8 <= r!.data.count else { return nil }
                r!.data.replaceSubrange(Int(off - base)..<(Int(off - base) + len - 8), with: p[8...])
            case NBD.replyTypeOffsetHole:
                let off = be64(p, 0), hl = Int(be32(p, 8))
                guard let base = readLengths[handle]?.offset, off >= base, Int(off - base) + hl <= r!.data.count else { return nil }
                r!.data.replaceSubrange(Int(off - base)..<(Int(off - base) + hl), with: [UInt8](repeating: 0, count: hl))
            case NBD.replyTypeBlockStatus:
                var k = 4
                while k + 8 <= p.count {
                    r!.extents.append(NBDExtent(length: be32(p, k), flags: be32(p, k + 4)))
                    k += 8
                }
            case NBD.replyTypeError, NBD.replyTypeErrorOffset:
                r!.error = be32(p, 0)
                let ml = Int(be16(p, 4))
                r!.message = String(decoding: p[6..<(6 + ml)], as: UTF8.self)
            default:
                return nil
            }
            if flags & NBD.replyFlagDone != 0 { return r }
        }
    }

    /// Sends a READ and returns its reply.
    func read(_ offset: UInt64, _ length: Int, flags: UInt16 = 0, handle: UInt64 = 7) -> Reply? {
        request(NBD.cmdRead, flags: flags, handle: handle, offset: offset, length: UInt32(length))
        return reply(readLengths: [handle: (offset, length)])
    }
}

// Big-endian helpers.
func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
func u32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32($0))) } }
func u64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64($0))) } }
func be16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) << 8 | UInt16(b[o + 1]) }
func be32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(b[o + $1]) } }
func be64(_ b: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(b[o + $1]) } }
