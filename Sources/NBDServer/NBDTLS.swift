// NBDTLS: TLS for the NBD server (NBD_OPT_STARTTLS, swift-nio-ssl), with
// nbdkit's option names: `--tls=off|on|require`, X.509 certificates from
// `--tls-certificates DIR` (nbdkit's layout: server-cert.pem with the chain,
// server-key.pem; ca-cert.pem is not needed by the server) or pre-shared
// keys from `--tls-psk FILE` (psktool's `identity:hexkey` lines). PSK runs
// on TLS 1.2 (BoringSSL offers PSK cipher suites only there); GnuTLS
// clients (nbdinfo, nbdcopy, qemu) negotiate it with ECDHE-PSK.
import Foundation
import NIOCore
import NIOSSL

public enum NBDTLSMode: String, Sendable, CaseIterable {
    /// No TLS: NBD_OPT_STARTTLS is answered with NBD_REP_ERR_UNSUP.
    case off
    /// TLS for clients that ask for it; plaintext clients are served too.
    case on
    /// Only TLS clients: every other option before STARTTLS gets NBD_REP_ERR_TLS_REQD.
    case require
}

public struct NBDTLSError: Error, CustomStringConvertible {
    public let description: String
    init(_ s: String) { description = s }
}

/// A loaded TLS setup: the SSL context every TLS connection shares.
public final class NBDTLS: Sendable {
    public let mode: NBDTLSMode
    let context: NIOSSLContext
    /// "X.509 certificates from DIR" or "PSK from FILE (N identities)".
    public let summary: String

    /// The cipher suites for PSK (TLS 1.2): forward-secret ECDHE-PSK first.
    static let pskCiphers = "ECDHE-PSK-CHACHA20-POLY1305:ECDHE-PSK-AES128-CBC-SHA:ECDHE-PSK-AES256-CBC-SHA:PSK-AES128-CBC-SHA:PSK-AES256-CBC-SHA"

    /// Loads certificates or keys; nil when `mode` is off.
    public static func load(mode: NBDTLSMode, certificates: String?, pskFile: String?) throws -> NBDTLS? {
        if mode == .off {
            if certificates != nil || pskFile != nil {
                throw NBDTLSError("--tls-certificates and --tls-psk need --tls=on or --tls=require")
            }
            return nil
        }
        switch (certificates, pskFile) {
        case (nil, nil):
            throw NBDTLSError("--tls=\(mode.rawValue) needs --tls-certificates DIR or --tls-psk FILE")
        case (.some, .some):
            throw NBDTLSError("give either --tls-certificates or --tls-psk, not both")
        case (let dir?, nil):
            return try NBDTLS(mode: mode, certificates: dir)
        case (nil, let file?):
            return try NBDTLS(mode: mode, pskFile: file)
        }
    }

    private init(mode: NBDTLSMode, certificates dir: String) throws {
        let certPath = dir + "/server-cert.pem"
        let keyPath = dir + "/server-key.pem"
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certPath)
        } catch {
            throw NBDTLSError("cannot read the server certificate \(certPath): \(error)")
        }
        guard !chain.isEmpty else { throw NBDTLSError("\(certPath) holds no certificate") }
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw NBDTLSError("cannot read the server key \(keyPath): \(error)")
        }
        var c = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                         privateKey: .privateKey(key))
        c.minimumTLSVersion = .tlsv12
        do {
            context = try NIOSSLContext(configuration: c)
        } catch {
            throw NBDTLSError("the certificate and key in \(dir) cannot be used: \(error)")
        }
        self.mode = mode
        summary = "X.509 certificate from \(dir)"
    }

    private init(mode: NBDTLSMode, pskFile: String) throws {
        let keys = try Self.readPSKFile(pskFile)
        var c = TLSConfiguration.makePreSharedKeyConfiguration()
        c.minimumTLSVersion = .tlsv12
        c.maximumTLSVersion = .tlsv12
        c.cipherSuites = Self.pskCiphers
        c.pskServerProvider = { ctx in
            guard let k = keys[ctx.clientIdentity], k.count <= ctx.maxPSKLength else {
                throw NBDTLSError("unknown PSK identity")
            }
            var b = NIOSSLSecureBytes()
            b.append(k)
            return PSKServerIdentityResponse(key: b)
        }
        do {
            context = try NIOSSLContext(configuration: c)
        } catch {
            throw NBDTLSError("cannot set up TLS with the keys of \(pskFile): \(error)")
        }
        self.mode = mode
        summary = "PSK from \(pskFile) (\(keys.count) identit\(keys.count == 1 ? "y" : "ies"))"
    }

    /// Reads `identity:hexkey` lines (psktool's format; empty lines and
    /// lines starting with # are skipped). Every error names the line.
    public static func readPSKFile(_ path: String) throws -> [String: [UInt8]] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NBDTLSError("cannot read the PSK file \(path)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw NBDTLSError("\(path): not UTF-8 text") }
        var keys: [String: [UInt8]] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.lastIndex(of: ":"), colon != line.startIndex else {
                throw NBDTLSError("\(path): line \(n + 1): expected identity:hexkey")
            }
            let id = String(line[..<colon])
            let hex = Array(line[line.index(after: colon)...].utf8)
            guard hex.count >= 2, hex.count % 2 == 0, hex.count <= 512 else {
                throw NBDTLSError("\(path): line \(n + 1): the key must be an even number of hex digits (at most 256 bytes)")
            }
            var key: [UInt8] = []
            var i = 0
            while i < hex.count {
                guard let hi = hexValue(hex[i]), let lo = hexValue(hex[i + 1]) else {
                    throw NBDTLSError("\(path): line \(n + 1): the key is not hexadecimal")
                }
                key.append(hi << 4 | lo)
                i += 2
            }
            guard keys[id] == nil else { throw NBDTLSError("\(path): line \(n + 1): identity \(id) appears twice") }
            keys[id] = key
        }
        guard !keys.isEmpty else { throw NBDTLSError("\(path) holds no keys") }
        return keys
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// A handler that runs TLS on one connection.
    func makeHandler() -> NIOSSLServerHandler {
        NIOSSLServerHandler(context: context)
    }
}
