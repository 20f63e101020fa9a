// NBDSecurityTests: access control of `backy nbd-server` with real
// clients: a Unix socket with mode 0660 and a group (user nobody can
// connect only when it is in that group), TLS through NBD_OPT_STARTTLS with
// pre-shared keys and with X.509 certificates (nbdcopy and nbdinfo use
// GnuTLS, the server swift-nio-ssl), `--tls=require` refusing plaintext
// clients, and plaintext sent after STARTTLS ending the connection.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class NBDSecurityTests: XCTestCase {
    /// Runs a command as user nobody (group nogroup, no other groups).
    func asNobody(_ exe: String, _ args: [String]) throws -> RunResult {
        let setpriv = try ServerTest.tool("setpriv")
        guard E2E.isRoot else { throw E2E.unavailable("running as nobody needs root") }
        return E2E.run(setpriv, ["--reuid=65534", "--regid=65534", "--clear-groups", exe] + args, timeout: 60)
    }

    func testUnixSocketHasMode0660AndItsGroup() throws {
        let nbdcopy = try ServerTest.tool("nbdcopy")
        let nbdinfo = try ServerTest.tool("nbdinfo")
        let dir = E2E.tempDir(self, "nbd-unix")
        chmod(dir, 0o755)
        let (job, img) = ServerTest.job(dir, mib: 8, seed: ServerTest.seed + 10)
        // Group nogroup: nobody (whose group it is) may connect.
        let sock = dir + "/nbd.sock"
        let s = try BackyServer(["-b", job, "nbd-server", "--unix", sock, "--unix-group", "nogroup"],
                                log: dir + "/unix.log", test: self) { FileManager.default.fileExists(atPath: sock) }
        var st = stat()
        XCTAssertEqual(lstat(sock, &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o660)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(st.st_gid, 65534)
        let uri = "nbd+unix:///latest?socket=\(sock)"
        let copy = dir + "/copy.img"
        let r = E2E.run(nbdcopy, [uri, copy])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(E2E.sha256(file: copy), E2E.sha256(file: img))
        let nobody = try asNobody(nbdinfo, [uri])
        XCTAssertEqual(nobody.code, 0, nobody.stderr)
        XCTAssertTrue(s.log.contains("listening on \(sock),"), s.log)
        XCTAssertFalse(s.log.contains("127.0.0.1"), "no TCP listener: \(s.log)")
        XCTAssertEqual(s.stop(), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sock), "the socket is removed at stop")

        // Without the group nobody cannot connect; a stale socket is replaced.
        let stale = dir + "/stale.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in stale.utf8.enumerated() { p[i] = b } }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)
        XCTAssertTrue(FileManager.default.fileExists(atPath: stale))
        let s2 = try BackyServer(["-b", job, "nbd-server", "--unix", stale], log: dir + "/unix2.log", test: self) {
            NBDSecurityTests.answers(stale)
        }
        let denied = try asNobody(nbdinfo, ["nbd+unix:///latest?socket=\(stale)"])
        XCTAssertNotEqual(denied.code, 0)
        XCTAssertTrue(denied.stderr.contains("Permission denied"), denied.stderr)
        XCTAssertEqual(E2E.run(nbdinfo, ["nbd+unix:///latest?socket=\(stale)"]).code, 0)
        // A second server on the same path is refused with one line.
        let again = E2E.backy(["-b", job, "nbd-server", "--unix", stale])
        XCTAssertEqual(again.code, 1)
        XCTAssertEqual(again.stderr, "Error: cannot listen on \(stale): another server is listening on \(stale)\n")
        XCTAssertEqual(s2.stop(), 0)
    }

    static func answers(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } } == 0
    }

    func testTLSWithPreSharedKeys() throws {
        let nbdcopy = try ServerTest.tool("nbdcopy")
        let nbdinfo = try ServerTest.tool("nbdinfo")
        let dir = E2E.tempDir(self, "nbd-psk")
        let (job, img) = ServerTest.job(dir, mib: 12, seed: ServerTest.seed + 11)
        let keys = dir + "/keys.psk"
        let key = E2E.randomBytes(32, seed: ServerTest.seed + 12).map { String(format: "%02x", $0) }.joined()
        try "# backy test keys\nalice:\(key)\n".write(toFile: keys, atomically: true, encoding: .utf8)
        let wrong = dir + "/wrong.psk"
        try "alice:\(String(repeating: "ab", count: 32))\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        let port = E2E.freePort()
        let s = try BackyServer(["-b", job, "nbd-server", "-p", String(port), "--tls=require", "--tls-psk", keys],
                                log: dir + "/psk.log", test: self) { NBDServerProcess.canConnect(port) }
        let copy = dir + "/copy.img"
        let r = E2E.run(nbdcopy, ["nbds://alice@127.0.0.1:\(port)/latest?tls-psk-file=\(keys)", copy])
        XCTAssertEqual(r.code, 0, r.stderr + s.log)
        XCTAssertEqual(E2E.sha256(file: copy), E2E.sha256(file: img))
        let info = E2E.run(nbdinfo, ["nbds://alice@127.0.0.1:\(port)/latest?tls-psk-file=\(keys)"], env: ["LIBNBD_DEBUG": "1"])
        XCTAssertEqual(info.code, 0, info.stderr)
        XCTAssertTrue(info.stderr.contains("key exchange ECDHE-PSK"), info.stderr)
        // A plaintext client is refused with NBD_REP_ERR_TLS_REQD and its message.
        let plain = E2E.run(nbdinfo, ["nbd://127.0.0.1:\(port)/latest"], env: ["LIBNBD_DEBUG": "1"])
        XCTAssertEqual(plain.code, 1)
        XCTAssertTrue(plain.stderr.contains("this server requires TLS"), plain.stderr.suffix(1500).description)
        // A wrong key or an unknown identity cannot connect.
        XCTAssertNotEqual(E2E.run(nbdinfo, ["nbds://alice@127.0.0.1:\(port)/latest?tls-psk-file=\(wrong)"]).code, 0)
        XCTAssertNotEqual(E2E.run(nbdinfo, ["nbds://mallory@127.0.0.1:\(port)/latest?tls-psk-file=\(keys)"]).code, 0)
        XCTAssertEqual(s.stop(), 0)
        // A bad key file is one error line.
        try "alice:xyz\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        let bad = E2E.backy(["-b", job, "nbd-server", "-p", "0", "--tls=on", "--tls-psk", wrong])
        XCTAssertEqual(bad.code, 1)
        XCTAssertEqual(bad.stderr, "Error: \(wrong): line 1: the key must be an even number of hex digits (at most 256 bytes)\n")
    }

    func testTLSWithX509Certificates() throws {
        let nbdcopy = try ServerTest.tool("nbdcopy")
        let nbdinfo = try ServerTest.tool("nbdinfo")
        let openssl = try ServerTest.tool("openssl")
        let dir = E2E.tempDir(self, "nbd-x509")
        let (job, img) = ServerTest.job(dir, mib: 12, seed: ServerTest.seed + 13)
        let pki = dir + "/pki"
        let other = dir + "/other-ca"
        for d in [pki, other] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        func ssl(_ args: [String]) {
            let r = E2E.run(openssl, args)
            XCTAssertEqual(r.code, 0, r.stderr)
        }
        ssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", pki + "/ca-key.pem", "-out", pki + "/ca-cert.pem",
             "-days", "2", "-subj", "/CN=backy test CA"])
        ssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", other + "/ca-key.pem", "-out", other + "/ca-cert.pem",
             "-days", "2", "-subj", "/CN=another CA"])
        ssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", pki + "/server-key.pem", "-out", pki + "/server.csr", "-subj", "/CN=localhost"])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n".write(toFile: pki + "/ext.cnf", atomically: true, encoding: .utf8)
        ssl(["x509", "-req", "-in", pki + "/server.csr", "-CA", pki + "/ca-cert.pem", "-CAkey", pki + "/ca-key.pem",
             "-CAcreateserial", "-out", pki + "/server-cert.pem", "-days", "2", "-extfile", pki + "/ext.cnf"])
        let port = E2E.freePort()
        let s = try BackyServer(["-b", job, "nbd-server", "-p", String(port), "--tls=on", "--tls-certificates", pki],
                                log: dir + "/x509.log", test: self) { NBDServerProcess.canConnect(port) }
        let copy = dir + "/copy.img"
        let r = E2E.run(nbdcopy, ["nbds://127.0.0.1:\(port)/latest?tls-certificates=\(pki)", copy])
        XCTAssertEqual(r.code, 0, r.stderr + s.log)
        XCTAssertEqual(E2E.sha256(file: copy), E2E.sha256(file: img))
        let list = E2E.run(nbdinfo, ["--list", "nbds://127.0.0.1:\(port)/?tls-certificates=\(pki)"])
        XCTAssertEqual(list.code, 0, list.stderr)
        XCTAssertTrue(list.out.contains("newstyle-fixed with TLS"), list.out)
        // --tls=on serves plaintext clients too.
        let plain = E2E.run(nbdinfo, ["nbd://127.0.0.1:\(port)/latest"])
        XCTAssertEqual(plain.code, 0, plain.stderr)
        XCTAssertTrue(plain.out.contains("without TLS"), plain.out)
        // A client that trusts another CA refuses the server.
        XCTAssertNotEqual(E2E.run(nbdinfo, ["nbds://127.0.0.1:\(port)/latest?tls-certificates=\(other)"]).code, 0)
        XCTAssertEqual(s.stop(), 0)
        // A missing key is one error line.
        let bad = E2E.backy(["-b", job, "nbd-server", "-p", "0", "--tls=on", "--tls-certificates", other])
        XCTAssertEqual(bad.code, 1)
        XCTAssertTrue(bad.stderr.hasPrefix("Error: cannot read the server certificate \(other)/server-cert.pem"), bad.stderr)
        XCTAssertEqual(bad.stderr.components(separatedBy: "\n").count, 2, bad.stderr)
    }

    /// Bytes a client sends after NBD_OPT_STARTTLS in plaintext (before
    /// the TLS handshake) could be injected by anyone on the path: the
    /// server drops the connection instead of reading them as options.
    func testPlaintextAfterStartTLSEndsTheConnection() throws {
        let dir = E2E.tempDir(self, "nbd-inject")
        let (job, _) = ServerTest.job(dir, mib: 4, seed: ServerTest.seed + 14)
        let keys = dir + "/keys.psk"
        try "alice:\(String(repeating: "0f", count: 32))\n".write(toFile: keys, atomically: true, encoding: .utf8)
        let port = E2E.freePort()
        let s = try BackyServer(["-b", job, "nbd-server", "-p", String(port), "--tls=require", "--tls-psk", keys],
                                log: dir + "/inject.log", test: self) { NBDServerProcess.canConnect(port) }
        let script = ServerTest.pyNBD + """
            c = connect(('127.0.0.1', int(sys.argv[1])))
            recvall(c, 18)
            c.sendall(struct.pack('>I', 3))
            # STARTTLS and a LIST in one write.
            c.sendall(struct.pack('>QII', 0x49484156454F5054, 5, 0) + struct.pack('>QII', 0x49484156454F5054, 3, 0))
            c.settimeout(10)
            got = b''
            try:
                while True:
                    x = c.recv(4096)
                    if not x: break
                    got += x
            except Exception as e:
                print('error', e)
            print('closed after %d bytes' % len(got))
            """
        let r = try ServerTest.python(script, [String(port)])
        XCTAssertEqual(r.out, "closed after 0 bytes\n", r.stderr)
        XCTAssertTrue(s.log.contains("data sent after NBD_OPT_STARTTLS before the TLS handshake"), s.log)
        XCTAssertEqual(s.stop(), 0)
    }
}
