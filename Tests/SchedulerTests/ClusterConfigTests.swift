// ClusterConfigTests.swift — several schedulers sharing RADOS jobs
// (issue 15): `lease`, `node-name` and a job's `nodes` in the
// configuration, and the slot check a lease holder makes
// (Schedule.uncoveredTags) against revisions made by any node.

import ChunkStore
import Foundation
import XCTest

@testable import Scheduler

final class ClusterConfigTests: XCTestCase {
    let path = "/etc/backy/backy.conf"
    let jobs = """
        schedules:
          s: {daily: {interval: 1d, keep: 7}}
        jobs:
          vm1: {schedule: s, source: {type: file, filename: /srv/images/vm1}}
          vm2: {schedule: s, nodes: [b1, b2], source: {type: file, filename: /srv/images/vm2}}

        """

    func error(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try SchedulerConfig.parse(text, path: path)
            XCTFail("expected a configuration error", file: file, line: line)
            return ""
        } catch {
            return "\(error)"
        }
    }

    func testLeaseNodeNameAndNodes() throws {
        let d = try SchedulerConfig.parse(jobs, path: path)
        XCTAssertEqual(d.cluster.lease, 60)
        XCTAssertEqual(d.cluster.nodeName, ClusterSettings.hostName)
        XCTAssertEqual(d.jobs.map(\.nodes), [nil, ["b1", "b2"]])
        XCTAssertTrue(d.jobs[0].runs(on: "x") && d.jobs[1].runs(on: "b2") && !d.jobs[1].runs(on: "b3"))
        let c = try SchedulerConfig.parse("global:\n  lease: 2m\n  node-name: backup-1.dc\n" + jobs, path: path)
        XCTAssertEqual(c.cluster.lease, 120)
        XCTAssertEqual(c.cluster.nodeName, "backup-1.dc")
        XCTAssertEqual(try SchedulerConfig.parse("global: {lease: 10}\n" + jobs, path: path).cluster.lease, 10)
        XCTAssertEqual(error("global:\n  lease: 2s\n" + jobs),
                       "/etc/backy/backy.conf: line 2: global.lease: expected an interval from 3s to 1h (e.g. 60s), found \"2s\"")
        XCTAssertEqual(error("global:\n  node-name: a b\n" + jobs),
                       "/etc/backy/backy.conf: line 2: global.node-name: a node name consists of letters, digits, '.', '-' and '_', found \"a b\"")
        XCTAssertEqual(error(jobs.replacingOccurrences(of: "[b1, b2]", with: "[]")),
                       "/etc/backy/backy.conf: line 5: jobs.vm2.nodes: expected at least one node name")
        XCTAssertEqual(error(jobs.replacingOccurrences(of: "[b1, b2]", with: "{a: 1}")),
                       "/etc/backy/backy.conf: line 5: jobs.vm2.nodes: expected a list of node names such as [a, b], found a mapping")
        XCTAssertEqual(ClusterSettings.invalidNodeName(String(repeating: "x", count: 65)), "a node name has 1 to 64 characters")
    }

    /// A slot ran once any node made a complete revision carrying the tag
    /// dated at or after the start of the slot's cell; an incomplete one, an
    /// older one or one without the tag does not count.
    func testUncoveredTags() throws {
        let s = try Schedule(["daily": ScheduleTag(interval: 86_400, keep: 7), "hourly": ScheduleTag(interval: 3_600, keep: 24)])
        let spread = 600  // cells start at 00:10 (daily) and HH:10 (hourly)
        let day = Date(timeIntervalSince1970: 20_000 * 86_400)
        let due = day.addingTimeInterval(3_600 * 5 + 600)  // 05:10, both tags' slot
        func rev(_ offset: Double, _ tags: Set<String>, complete: Bool = true) -> ScheduleRevision {
            ScheduleRevision(id: UUID().uuidString, timestamp: due.addingTimeInterval(offset), tags: tags, complete: complete)
        }
        XCTAssertEqual(s.uncoveredTags(["daily", "hourly"], due: due, spread: spread, history: []), ["daily", "hourly"])
        XCTAssertEqual(s.uncoveredTags(["daily", "hourly"], due: due, spread: spread, history: [rev(2, ["daily", "hourly"])]), [])
        XCTAssertEqual(s.uncoveredTags(["daily", "hourly"], due: due, spread: spread, history: [rev(2, ["hourly"])]), ["daily"])
        XCTAssertEqual(s.uncoveredTags(["hourly"], due: due, spread: spread, history: [rev(2, ["hourly"], complete: false)]), ["hourly"])
        // The previous hourly cell (04:10-05:10) does not count for 05:10 …
        XCTAssertEqual(s.uncoveredTags(["hourly"], due: due, spread: spread, history: [rev(-1, ["hourly"])]), ["hourly"])
        // … but the daily cell started at 00:10.
        XCTAssertEqual(s.uncoveredTags(["daily"], due: due, spread: spread, history: [rev(-3_600 * 5, ["daily"])]), [])
        XCTAssertEqual(s.uncoveredTags(["daily"], due: due, spread: spread, history: [rev(-3_600 * 5 - 1, ["daily"])]), ["daily"])
        // A retry late in the cell is the same slot.
        XCTAssertEqual(s.uncoveredTags(["hourly"], due: due.addingTimeInterval(3_000), spread: spread, history: [rev(2, ["hourly"])]), [])
        // Tags outside the schedule are kept.
        XCTAssertEqual(s.uncoveredTags(["manual"], due: due, spread: spread, history: [rev(2, ["manual"])]), ["manual"])
    }
}
