// ConfigTests.swift — the scheduler configuration (backy.conf.example): defaults,
// relative paths resolved against the config file's directory, and one-line
// errors that name the file, the line and the key.

import ChunkStore
import Foundation
import XCTest

@testable import Scheduler

final class SchedulerConfigTests: XCTestCase {
    let path = "/etc/backy/backy.conf"

    func parse(_ text: String) throws -> SchedulerConfig {
        try SchedulerConfig.parse(text, path: path)
    }

    /// The error message for `text`, or a failure.
    func error(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try parse(text)
            XCTFail("expected a configuration error", file: file, line: line)
            return ""
        } catch let e as ConfigError {
            XCTAssertFalse(e.message.contains("\n"), "one line: \(e.message)", file: file, line: line)
            return e.message
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
            return ""
        }
    }

    let minimal = """
        schedules:
          default:
            daily: {interval: 1d, keep: 7}
            weekly: {interval: 1w, keep: 4}
        jobs:
          test01:
            schedule: default
            source: {type: file, filename: /srv/images/test01}

        """

    func testDefaultsOfBackyTwoFour() throws {
        let c = try parse(minimal)
        XCTAssertEqual(c.baseDir, "/srv/backy")
        XCTAssertEqual(c.workerLimit, 1)
        XCTAssertEqual(c.statusFile, "/srv/backy/status")
        XCTAssertEqual(c.statusInterval, 30)
        XCTAssertEqual(c.telnetAddrs, ["::1", "127.0.0.1"])
        XCTAssertEqual(c.telnetPort, 6023)
        XCTAssertEqual(c.jobs.map(\.name), ["test01"])
        XCTAssertEqual(c.jobs[0].scheduleName, "default")
        XCTAssertEqual(c.jobs[0].schedule.interval(of: "weekly"), 604_800)
        XCTAssertEqual(c.jobs[0].source["filename"], .string("/srv/images/test01"))
        // The spread (Spread) for test01 with L = 1 w.
        XCTAssertEqual(c.jobs[0].spread, 159_773)
    }

    /// The example of backy 2.4's documentation, as operators
    /// have it in /etc/backy.conf: loads unchanged, flyingcircus included.
    func testBackyTwoFourConfigLoadsUnchanged() throws {
        let c = try parse("""
            global:
                base-dir: /srv/backy
                worker-limit: 3
                status-interval: 30
                telnet-addrs: "::1, 127.0.0.1"
                telnet-port: 6023
            schedules:
                default:
                    daily:   {interval: 1d, keep: 7}
                    weekly:  {interval: 1w, keep: 4}
                    monthly: {interval: 30d, keep: 3}
                frequent:
                    hourly:  {interval: 1h, keep: 24}
                    daily:   {interval: 1d, keep: 7}
                    weekly:  {interval: 1w, keep: 12}
            jobs:
                test01:
                    schedule: default
                    source: {type: file, filename: /path/to/vm/image}
                test02:
                    schedule: default
                    source: {type: ceph-rbd, pool: rbd, image: test02}
                test03:
                    schedule: frequent
                    source:
                        type: flyingcircus
                        pool: test
                        image: test03.root
                        vm: test03
                        consul_acl_token: a211c244-846b-11e5-999b-081196cf15b4

            """)
        XCTAssertEqual(c.workerLimit, 3)
        XCTAssertEqual(c.jobs.map(\.name).sorted(), ["test01", "test02", "test03"])
        let fc = c.jobs.first { $0.name == "test03" }!
        XCTAssertEqual(fc.source["type"], .string("flyingcircus"))
        XCTAssertEqual(fc.source["vm"], .string("test03"))
        XCTAssertEqual(fc.schedule.interval(of: "hourly"), 3600)
        // test01 keeps its time of day: the spread (Spread) with L = 30 d.
        XCTAssertEqual(c.jobs.first { $0.name == "test01" }!.spread, 639_092)
    }

    func testGlobalSectionAndRelativePaths() throws {
        let c = try parse("""
            global:
              base-dir: ../data/backy
              worker-limit: 3
              status-file: run/status.yaml
              status-interval: 1
              telnet-addrs: "127.0.0.1,  ::1 ,"
              telnet-port: 16023
              unknown-key: ignored
            schedules:
              s: {hourly: {interval: 1h, keep: 24}, quick: {interval: 10, keep: 2}}
            jobs:
              b: {schedule: s, source: {type: file, filename: images/b.img, cow: false}}
              a: {schedule: s, source: {type: ceph-rbd, pool: rbd, image: a}}
            """)
        XCTAssertEqual(c.baseDir, "/etc/data/backy")
        XCTAssertEqual(c.statusFile, "/etc/backy/run/status.yaml")
        XCTAssertEqual(c.workerLimit, 3)
        XCTAssertEqual(c.statusInterval, 1)
        XCTAssertEqual(c.telnetAddrs, ["127.0.0.1", "::1"])
        XCTAssertEqual(c.telnetPort, 16023)
        XCTAssertEqual(c.jobs.map(\.name), ["a", "b"], "sorted by name")
        XCTAssertEqual(c.jobs[1].source["filename"], .string("/etc/backy/images/b.img"))
        XCTAssertEqual(c.jobs[1].source["cow"], .bool(false), "other source keys are kept verbatim")
        XCTAssertEqual(c.jobs[0].schedule.interval(of: "quick"), 10, "a YAML integer interval means seconds")
    }

    func testGlobalMayBeAbsentAndJobsMayBeEmpty() throws {
        let c = try parse("schedules:\n  s: {d: {interval: 1d, keep: 1}}\njobs: {}\n")
        XCTAssertTrue(c.jobs.isEmpty)
    }

    func testErrorsNameFileLineAndKey() {
        XCTAssertEqual(error(minimal.replacingOccurrences(of: "schedule: default", with: "schedule: hourly")),
                       "/etc/backy/backy.conf: line 7: jobs.test01.schedule: unknown schedule \"hourly\" (defined: default)")
        XCTAssertEqual(error(minimal.replacingOccurrences(of: "keep: 7", with: "keep: 0")),
                       "/etc/backy/backy.conf: line 3: schedules.default.daily.keep: expected a positive integer, found 0")
        XCTAssertEqual(error(minimal.replacingOccurrences(of: "interval: 1w", with: "interval: 1y")),
                       "/etc/backy/backy.conf: line 4: schedules.default.weekly.interval: invalid interval \"1y\": expected an integer optionally followed by w, d, h, m or s")
        XCTAssertEqual(error(minimal.replacingOccurrences(of: "type: file", with: "type: ceph")),
                       "/etc/backy/backy.conf: line 8: jobs.test01.source.type: unknown source type \"ceph\" (known: file, ceph-rbd, flyingcircus)")
        XCTAssertEqual(error(minimal.replacingOccurrences(of: "filename", with: "file")),
                       "/etc/backy/backy.conf: line 8: jobs.test01.source.filename: missing filename (required for type file)")
        XCTAssertEqual(error("global:\n  worker-limit: many\n" + minimal),
                       "/etc/backy/backy.conf: line 2: global.worker-limit: expected an integer from 1 to 1000, found \"many\"")
        XCTAssertEqual(error("global:\n  telnet-port: 70000\n" + minimal),
                       "/etc/backy/backy.conf: line 2: global.telnet-port: expected a port number from 1 to 65535, found 70000")
        XCTAssertEqual(error("jobs: {}\n"),
                       "/etc/backy/backy.conf: schedules: missing (a mapping of schedule name → tag → {interval, keep})")
        XCTAssertEqual(error("schedules:\n  s: {d: {interval: 1d, keep: 1}}\n"),
                       "/etc/backy/backy.conf: jobs: missing (a mapping of job name → {schedule, source})")
        XCTAssertEqual(error("schedules:\n  s: {d: {keep: 1}}\njobs: {}\n"),
                       "/etc/backy/backy.conf: line 2: schedules.s.d.interval: missing interval")
        XCTAssertEqual(error(minimal.replacingOccurrences(of: "test01:", with: "../evil:")),
                       "/etc/backy/backy.conf: line 6: jobs.../evil: invalid job name: must not start with a dot")
        XCTAssertEqual(error(minimal.replacingOccurrences(of: "test01:", with: "status:")),
                       "/etc/backy/backy.conf: line 6: jobs.status: a job cannot be named like the status file /srv/backy/status")
        XCTAssertTrue(error("global: [1, 2\n").hasPrefix("/etc/backy/backy.conf: invalid YAML: "))
        XCTAssertEqual(error("- a\n- b\n"),
                       "/etc/backy/backy.conf: the configuration must be a YAML mapping with global, schedules and jobs (found a list)")
    }

    /// `store:` (issue 14): global `rados:POOL` makes every job a RADOS job
    /// in the namespace of its name; a job's own `store` wins; bad values are
    /// one-line errors.
    func testStoreKey() throws {
        let two = minimal + "  test02:\n    schedule: default\n    store: rados:other/ns2\n    source: {type: file, filename: /srv/images/test02}\n"
        XCTAssertEqual(try parse(two).jobs.map(\.store), [nil, RadosStoreSpec(pool: "other", namespace: "ns2")])
        let global = try parse("global:\n  store: rados:backy\n" + two)
        XCTAssertEqual(global.jobs.map(\.store), [RadosStoreSpec(pool: "backy", namespace: "test01"),
                                                  RadosStoreSpec(pool: "other", namespace: "ns2")])
        XCTAssertEqual(error("global:\n  store: /srv/backy\n" + minimal),
                       "/etc/backy/backy.conf: line 2: global.store: expected rados:POOL (each job's namespace is its name), found \"/srv/backy\"")
        XCTAssertEqual(error("global:\n  store: rados:backy/ns\n" + minimal),
                       "/etc/backy/backy.conf: line 2: global.store: expected rados:POOL (each job's namespace is its name), found \"rados:backy/ns\"")
        XCTAssertEqual(error(minimal.replacingOccurrences(of: "schedule: default", with: "schedule: default\n    store: 'rados:'")),
                       "/etc/backy/backy.conf: line 8: jobs.test01.store: expected rados:POOL[/NAMESPACE], found \"rados:\"")
    }

    func testMissingFileIsOneLine() {
        XCTAssertThrowsError(try SchedulerConfig.load(path: "/nonexistent/backy.conf")) { e in
            XCTAssertEqual("\(e)", "configuration file /nonexistent/backy.conf does not exist")
        }
    }

    func testCheckNeedsOnlyTheGlobalSection() throws {
        let dir = NSTemporaryDirectory() + "backy-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "global: {base-dir: /b}\njobs: {x: {schedule: nope}}\n".write(toFile: dir + "/c.conf", atomically: true, encoding: .utf8)
        XCTAssertEqual(try SchedulerConfig.loadGlobal(path: dir + "/c.conf").statusFile, "/b/status")
        XCTAssertThrowsError(try SchedulerConfig.load(path: dir + "/c.conf"))
    }
}
