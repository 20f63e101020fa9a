// ConfigServersTests.swift — the servers' configuration keys: the console's
// Unix socket and connection limit, and the `nbd-server` section (values,
// relative paths, YAML's bare off/on, one-line errors naming the key).

import Foundation
import XCTest

@testable import Scheduler

final class ConfigServersTests: XCTestCase {
    let path = "/etc/backy/backy.conf"
    let tail = "schedules:\n  s: {daily: {interval: 1d, keep: 3}}\njobs:\n  vm1: {schedule: s, source: {type: file, filename: /img}}\n"

    func parse(_ head: String) throws -> SchedulerConfig {
        try SchedulerConfig.parse(head + tail, path: path)
    }

    func error(_ head: String) -> String {
        do {
            _ = try parse(head)
            XCTFail("expected an error for \(head)")
        } catch let e as ConfigError {
            XCTAssertFalse(e.message.contains("\n"))
            return e.message
        } catch {
            XCTFail("\(error)")
        }
        return ""
    }

    func testDefaults() throws {
        let c = try parse("")
        XCTAssertNil(c.consoleSocket)
        XCTAssertEqual(c.consoleMaxConnections, 32)
        XCTAssertEqual(c.nbd, NBDSettings())
        XCTAssertFalse(c.nbd.inScheduler)
    }

    func testConsoleAndNBDKeys() throws {
        let c = try parse("""
            global:
              telnet-addrs: ""
              console-socket: run/console.sock
              console-socket-group: backy-admin
              console-max-connections: 5
            nbd-server:
              in-scheduler: true
              host: ""
              unix: /run/backy/nbd.sock
              unix-group: backy-restore
              tls: off
              tls-psk: keys.psk
              overlay-mib: 100
              buffer-mib: 40
              max-connections: 8
              handshake-timeout: 5
              idle-timeout: 0

            """)
        XCTAssertEqual(c.telnetAddrs, [])
        XCTAssertEqual(c.consoleSocket, "/etc/backy/run/console.sock")
        XCTAssertEqual(c.consoleSocketGroup, "backy-admin")
        XCTAssertEqual(c.consoleMaxConnections, 5)
        XCTAssertTrue(c.nbd.inScheduler)
        XCTAssertEqual(c.nbd.host, "")
        XCTAssertEqual(c.nbd.unix, "/run/backy/nbd.sock")
        XCTAssertEqual(c.nbd.unixGroup, "backy-restore")
        XCTAssertEqual(c.nbd.tls, "off", "YAML's bare off is a boolean")
        XCTAssertEqual(c.nbd.tlsPSK, "/etc/backy/keys.psk")
        XCTAssertEqual(c.nbd.overlayMiB, 100)
        XCTAssertEqual(c.nbd.bufferMiB, 40)
        XCTAssertEqual(c.nbd.maxConnections, 8)
        XCTAssertEqual(c.nbd.handshakeTimeout, 5)
        XCTAssertEqual(c.nbd.idleTimeout, 0)
        XCTAssertEqual(try parse("nbd-server:\n  tls: on\n").nbd.tls, "on")
        XCTAssertEqual(try parse("nbd-server:\n  tls: require\n").nbd.tls, "require")
    }

    func testErrorsNameTheKey() {
        XCTAssertEqual(error("nbd-server:\n  tls: maybe\n"),
                       "/etc/backy/backy.conf: line 2: nbd-server.tls: expected off, on or require, found \"maybe\"")
        XCTAssertEqual(error("nbd-server:\n  buffer-mib: 8\n"),
                       "/etc/backy/backy.conf: line 2: nbd-server.buffer-mib: expected MiB from 40 to 1048576, found 8")
        XCTAssertTrue(error("nbd-server:\n  prot: 9000\n").hasPrefix("/etc/backy/backy.conf: line 2: nbd-server.prot: unknown key (known: "))
        XCTAssertEqual(error("nbd-server:\n  in-scheduler: true\n  host: \"\"\n"),
                       "/etc/backy/backy.conf: line 3: nbd-server.host: the NBD server needs a TCP address or a unix socket")
        XCTAssertEqual(error("global:\n  console-max-connections: 0\n"),
                       "/etc/backy/backy.conf: line 2: global.console-max-connections: expected an integer from 1 to 1000, found 0")
        XCTAssertEqual(error("nbd-server: [1]\n"), "/etc/backy/backy.conf: line 1: nbd-server: expected a mapping, found a list")
    }
}
