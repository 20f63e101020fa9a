// Fuzz target nbdserver: the real NBD server of `backy nbd-server`, in this
// process, serving a job with a native revision and a backy 2.4 revision
// (copied from Fixtures/legacy/job-chunked) over a Unix socket. Each input
// is what one client sends on one connection (handshake, options,
// requests, write payloads); the harness reads every reply, closes its
// sending side and waits for the server to close the connection. The first
// byte picks the read-only or the writable (overlay) server. The server may
// refuse, answer with errors or close; it may not trap, hang (10 s), or
// hold more than its chunk cache, workers and reply budget allow.
import ChunkStore
import Foundation
import FuzzSupport
import Logging
import NBDServer
#if canImport(Glibc)
import Glibc
#endif

enum Target {
    /// BACKY_FUZZ_VERBOSE=1: say how much each connection sent and received.
    static let verbose = ProcessInfo.processInfo.environment["BACKY_FUZZ_VERBOSE"] == "1"
    /// Milliseconds of silence after which the server is taken to have
    /// answered everything (BACKY_FUZZ_NBD_QUIET_MS).
    static let quiet = Int32(ProcessInfo.processInfo.environment["BACKY_FUZZ_NBD_QUIET_MS"] ?? "") ?? 20
    static let cacheChunks = 2
    static let workers = 2
    static let replyBudget = 8 << 20

    /// The job: a native revision of 9 MiB (4 MiB of data, 4 MiB of zeros,
    /// a short last chunk of 1 MiB) and the backy 2.4 revisions of
    /// Fixtures/legacy/job-chunked (JSON maps, LZO chunks).
    static let nativeID = "NativeRevision22222222"
    static let job: Job = {
        let job = Fuzz.job
        do {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().deletingLastPathComponent().path
            let legacy = root + "/Fixtures/legacy/job-chunked"
            let fm = FileManager.default
            for name in try fm.contentsOfDirectory(atPath: legacy) {
                let stem = name.hasSuffix(".rev") ? String(name.dropLast(4)) : name
                if RevisionID.isWellFormed(stem) { try fm.copyItem(atPath: legacy + "/" + name, toPath: job.path + "/" + name) }
            }
            let chunksDir = job.path + "/" + DirectoryChunks.directoryName
            for dir in try fm.contentsOfDirectory(atPath: legacy + "/chunks") where dir.utf8.count == 2 {
                try Posix.mkdirIfMissing(chunksDir + "/" + dir)
                for f in try fm.contentsOfDirectory(atPath: legacy + "/chunks/" + dir) {
                    try fm.copyItem(atPath: legacy + "/chunks/" + dir + "/" + f, toPath: chunksDir + "/" + dir + "/" + f)
                }
            }
            let ws = ChunkWorkspace()
            var ids: [ChunkID] = []
            for (i, n) in [4 << 20, 4 << 20, 1 << 20].enumerated() {
                for k in 0..<n { ws.data[k] = i == 1 ? 0 : UInt8(truncatingIfNeeded: k &* 31 &+ i) }
                let chunk = UnsafeRawBufferPointer(rebasing: ws.data[0..<n])
                let id = ChunkHash.id(of: chunk)
                if !id.isZero { try job.store.write(id, data: chunk, workspace: ws, tag: "0123456789abcdef") }
                ids.append(id)
            }
            let size: Int64 = 9 << 20
            try job.backend.write(.map(nativeID), ChunkMap(imageSize: UInt64(size), chunks: ids).encode(), durable: false)
            try job.save(Revision(id: nativeID, timestamp: Date(timeIntervalSince1970: 1_700_000_000), parent: nil, tags: ["daily"],
                                  stats: YAMLMap([("bytes_written", .int(size)), ("duration", .double(1))])))
            Fuzz.check(try JobExports(job: job, log: Fuzz.quiet).list().count >= 2, "the NBD job lists fewer than 2 revisions")
        } catch {
            Fuzz.fail("cannot set up the NBD job: \(error)")
        }
        return job
    }()

    static func server(writable: Bool) -> String {
        let path = Fuzz.scratch + (writable ? "/nbd-rw.sock" : "/nbd-ro.sock")
        var c = NBDServerConfig()
        c.host = nil
        c.unixPath = path
        c.writable = writable
        c.overlayDirectory = Fuzz.scratch
        c.overlayLimit = 64 << 20
        c.cacheChunks = cacheChunks
        c.workers = workers
        c.readAhead = 1
        c.replyBudget = replyBudget
        c.maxConnections = 4
        c.handshakeTimeout = 5
        c.shutdownGrace = 1
        let server = NBDServer(provider: JobExports(job: job, log: Fuzz.quiet), config: c, log: Fuzz.quiet)
        do { try server.start() } catch { Fuzz.fail("cannot start the NBD server: \(error)") }
        servers.append(server)
        return path
    }
    nonisolated(unsafe) static var servers: [NBDServer] = []  // kept running; only the fuzzing thread touches this
    static let readOnly = server(writable: false)
    static let writable = server(writable: true)
}

/// One client connection: sends `bytes` while reading every reply; once
/// all is sent and the server has been quiet for `Target.quiet` ms (it
/// answers options and requests asynchronously, and drops what is pending
/// when the client's EOF arrives), closes its sending side and reads until
/// the server closes. False if the server has not closed 10 s later.
func converse(_ path: String, _ bytes: UnsafeRawBufferPointer) -> Bool {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { Fuzz.fail("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
        for (i, c) in path.utf8.enumerated() { p[i] = c }
    }
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard ok == 0 else { Fuzz.fail("connect \(path): \(String(cString: strerror(errno)))") }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    var sent = 0
    var shut = false
    var sink = [UInt8](repeating: 0, count: 1 << 16)
    var received = 0
    defer { if Target.verbose { fputs("nbdserver: sent \(sent) of \(bytes.count) bytes, received \(received)\n", stderr) } }
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline {
        let waiting = sent == bytes.count && !shut
        var p = pollfd(fd: fd, events: Int16(POLLIN) | (sent < bytes.count ? Int16(POLLOUT) : 0), revents: 0)
        let r = poll(&p, 1, waiting ? Target.quiet : 100)
        if r == 0 && waiting { shutdown(fd, Int32(SHUT_WR)); shut = true; continue }
        if r <= 0 { continue }
        if p.revents & Int16(POLLOUT) != 0 && sent < bytes.count {
            let n = write(fd, bytes.baseAddress! + sent, bytes.count - sent)
            if n > 0 { sent += n } else if n < 0 && errno != EAGAIN { sent = bytes.count }  // the server closed
        }
        if p.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            let n = sink.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n > 0 { received += n }
            if n == 0 || (n < 0 && errno != EAGAIN) { return true }
        }
    }
    return false
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let chunk = 4 << 20
    let budget = Fuzz.Budget(extra: (Target.cacheChunks + Target.workers + 2) * chunk + Target.replyBudget)
    return Fuzz.one(data, size, budget: budget, setup: { _ = (Target.readOnly, Target.writable) }) { input in
        guard let first = input.first else { return }
        let path = first & 1 == 0 ? Target.readOnly : Target.writable
        Fuzz.check(converse(path, UnsafeRawBufferPointer(rebasing: input[1...])),
                   "the NBD server neither answered nor closed the connection within 10 s of the client's EOF")
    }
}

runFuzzer(fuzzOne)
