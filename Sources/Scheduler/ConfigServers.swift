// ConfigServers.swift — the configuration keys of the servers: the console's
// Unix socket and connection limit (`global.console-socket`,
// `global.console-socket-group`, `global.console-max-connections`) and the
// `nbd-server` section, which `backy nbd-server -c CONFIG` reads for its
// defaults and which, with `in-scheduler: true`, makes the scheduler serve
// every job over NBD itself. The values stay plain (strings and numbers):
// the command line turns them into the NBD server's configuration, so this
// module does not depend on the NBD server.

import ChunkStore
import Foundation

/// The `nbd-server` section; nil fields were not given.
public struct NBDSettings: Equatable, Sendable {
    /// Whether the scheduler runs the NBD server in-process.
    public var inScheduler = false
    /// TCP address ("" for no TCP listener).
    public var host: String?
    public var port: Int?
    public var unix: String?
    public var unixGroup: String?
    /// "off", "on" or "require".
    public var tls: String?
    public var tlsCertificates: String?
    public var tlsPSK: String?
    public var writable: Bool?
    public var overlayDir: String?
    public var overlayMiB: Int?
    public var cacheMiB: Int?
    public var bufferMiB: Int?
    public var maxConnections: Int?
    public var handshakeTimeout: Int?
    public var idleTimeout: Int?

    public init() {}
}

extension SchedulerConfig {
    public static let defaultConsoleMaxConnections = 32

    /// Reads the console keys of `global` into `config`.
    static func parseConsoleKeys(_ gm: YAMLMap, into config: inout SchedulerConfig, problems p: Problems, configDir: String) throws {
        if let v = gm["console-socket"] {
            guard let s = v.string, v.map == nil else { throw p.error(gm, "console-socket", "expected a socket path", prefix: "global") }
            config.consoleSocket = s.isEmpty ? nil : standardize(absolutePath(s, relativeTo: configDir))
        }
        if let v = gm["console-socket-group"] {
            guard let s = v.string, !s.isEmpty, v.map == nil else { throw p.error(gm, "console-socket-group", "expected a group name", prefix: "global") }
            config.consoleSocketGroup = s
        }
        if let v = gm["console-max-connections"] {
            guard let n = v.int, n >= 1, n <= 1000 else {
                throw p.error(gm, "console-max-connections", "expected an integer from 1 to 1000, found \(show(v))", prefix: "global")
            }
            config.consoleMaxConnections = Int(n)
        }
    }

    /// Reads the `nbd-server` section.
    static func parseNBD(_ top: YAMLMap, problems p: Problems, configDir: String) throws -> NBDSettings {
        var s = NBDSettings()
        guard let v = top["nbd-server"], !v.isNull else { return s }
        guard let m = v.map else { throw p.error(top, "nbd-server", "expected a mapping, found \(v.kindName)") }
        let known: Set<String> = ["in-scheduler", "host", "port", "unix", "unix-group", "tls", "tls-certificates", "tls-psk",
                                  "writable", "overlay-dir", "overlay-mib", "cache-mib", "buffer-mib", "max-connections",
                                  "handshake-timeout", "idle-timeout"]
        for k in m.keys where !known.contains(k) {
            throw p.error(m, k, "unknown key (known: \(known.sorted().joined(separator: ", ")))", prefix: "nbd-server")
        }
        func bool(_ k: String) throws -> Bool? {
            guard let v = m[k] else { return nil }
            guard let b = v.bool else { throw p.error(m, k, "expected true or false, found \(show(v))", prefix: "nbd-server") }
            return b
        }
        func path(_ k: String) throws -> String? {
            guard let v = m[k] else { return nil }
            guard let x = v.string, !x.isEmpty, v.map == nil else { throw p.error(m, k, "expected a path", prefix: "nbd-server") }
            return standardize(absolutePath(x, relativeTo: configDir))
        }
        func int(_ k: String, _ range: ClosedRange<Int64>, _ what: String) throws -> Int? {
            guard let v = m[k] else { return nil }
            guard let n = v.int, range.contains(n) else {
                throw p.error(m, k, "expected \(what) from \(range.lowerBound) to \(range.upperBound), found \(show(v))", prefix: "nbd-server")
            }
            return Int(n)
        }
        s.inScheduler = try bool("in-scheduler") ?? false
        if let v = m["host"] {
            guard let h = v.string, v.map == nil else { throw p.error(m, "host", "expected an address (\"\" for no TCP)", prefix: "nbd-server") }
            s.host = h
        }
        s.port = try int("port", 0...65535, "a port number")
        s.unix = try path("unix")
        if let v = m["unix-group"] {
            guard let g = v.string, !g.isEmpty, v.map == nil else { throw p.error(m, "unix-group", "expected a group name", prefix: "nbd-server") }
            s.unixGroup = g
        }
        if let v = m["tls"] {
            // YAML 1.1 reads a bare off/on as a boolean.
            let t: String?
            switch v {
            case .bool(let b): t = b ? "on" : "off"
            case .string(let x) where ["off", "on", "require"].contains(x): t = x
            default: t = nil
            }
            guard let t else { throw p.error(m, "tls", "expected off, on or require, found \(show(v))", prefix: "nbd-server") }
            s.tls = t
        }
        s.tlsCertificates = try path("tls-certificates")
        s.tlsPSK = try path("tls-psk")
        s.writable = try bool("writable")
        s.overlayDir = try path("overlay-dir")
        s.overlayMiB = try int("overlay-mib", 1...(1 << 30), "MiB")
        s.cacheMiB = try int("cache-mib", 4...(1 << 20), "MiB")
        s.bufferMiB = try int("buffer-mib", 40...(1 << 20), "MiB")
        s.maxConnections = try int("max-connections", 1...100_000, "a number")
        s.handshakeTimeout = try int("handshake-timeout", 1...86400, "seconds")
        s.idleTimeout = try int("idle-timeout", 0...(86400 * 365), "seconds")
        if s.inScheduler && s.host == "" && s.unix == nil {
            throw p.error(m, "host", "the NBD server needs a TCP address or a unix socket", prefix: "nbd-server")
        }
        return s
    }
}
