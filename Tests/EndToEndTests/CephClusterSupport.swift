// CephClusterSupport: a throwaway Ceph cluster for a test class (one
// monitor, one memstore OSD on 127.0.0.1, from scripts/ceph-test-cluster),
// started in the class's setUp and stopped in its tearDown.
import Foundation
import XCTest

// @unchecked Sendable: `started` and `startError` are set by start() in the class's setUp, before the tests read them.
final class TestCephCluster: @unchecked Sendable {
    let dir: String
    private(set) var started = false
    private(set) var startError = ""

    static var repo: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }
    static var script: String { repo + "/scripts/ceph-test-cluster" }

    var conf: String { dir + "/ceph.conf" }
    /// The environment of every backy, rados and rbd call: this cluster only.
    var env: [String: String] { ["CEPH_CONF": conf, "CEPH_ARGS": ""] }

    init(prefix: String) {
        dir = "/tmp/\(prefix)-\(UUID().uuidString.prefix(8))"
    }

    /// Starts the cluster (false, with `startError`, if it did not come up).
    @discardableResult
    func start() -> Bool {
        // The daemons outlive the script. Foundation's Process notices a
        // child's exit when every holder of a descriptor it passed along has
        // closed it, so close everything but 0-2 before the script runs.
        let closeFDs = #"for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null; done; exec "$0" "$@""#
        let r = E2E.run("/bin/bash", ["-c", closeFDs, TestCephCluster.script, "start", dir], timeout: 120)
        started = r.code == 0
        if !started { startError = "ceph-test-cluster start failed (\(r.code)): \(r.stderr)" }
        return started
    }

    func stop() {
        if started { E2E.run(TestCephCluster.script, ["stop", dir], timeout: 60) }
        started = false
    }

    /// A started cluster with pool `pool`, for a test class's setUp (a
    /// pool that cannot be created fails the class).
    static func withPool(prefix: String, pool: String) -> TestCephCluster {
        let c = TestCephCluster(prefix: prefix)
        if c.start() {
            let r = c.tool("ceph", ["osd", "pool", "create", pool, "8", "8"])
            if r.code != 0 { XCTFail("cannot create pool \(pool): \(r.stderr)") }
        }
        return c
    }

    /// For a test's setUp: the class's cluster if it started, else why the
    /// test cannot run (E2E.unavailable: a failure unless BACKY_ALLOW_SKIPS).
    static func require(_ c: TestCephCluster?) throws {
        guard let c, c.started else { throw E2E.unavailable("no Ceph test cluster: \(c?.startError ?? "")") }
    }

    /// Runs a Ceph command-line tool (`ceph`, `rados`, `rbd`) on this cluster.
    @discardableResult
    func tool(_ name: String, _ args: [String], timeout: Double = 120) -> RunResult {
        E2E.run("/usr/bin/" + name, args, env: env, timeout: timeout)
    }
}
