// swift-tools-version:6.0
// backy: block-level backup of VM images (file and Ceph RBD sources) into a
// deduplicating, verified chunk store, with a scheduler daemon and an NBD server.
import PackageDescription

let package = Package(
    name: "backy",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "backy", targets: ["backy"]),
        // The libraries, for the fuzz targets in fuzz/ (a package of its own).
        .library(name: "ChunkStore", targets: ["ChunkStore"]),
        .library(name: "SourcesPlugins", targets: ["SourcesPlugins"]),
        .library(name: "Scheduler", targets: ["Scheduler"]),
        .library(name: "NBDServer", targets: ["NBDServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
    ],
    targets: [
        // C libraries, linked from Debian's -dev packages.
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CRBD", path: "Sources/CRBD",
                       providers: [.apt(["librbd-dev", "librados-dev"])]),
        .systemLibrary(name: "CLZO", path: "Sources/CLZO",
                       providers: [.apt(["liblzo2-dev"])]),
        .systemLibrary(name: "CLibYAML", path: "Sources/CLibYAML", pkgConfig: "yaml-0.1",
                       providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CFuse3", path: "Sources/CFuse3", pkgConfig: "fuse3",
                       providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CBlkid", path: "Sources/CBlkid", pkgConfig: "blkid",
                       providers: [.apt(["libblkid-dev"])]),
        // fork/exec with a parent-death signal and a clean descriptor table.
        .target(name: "CLinux", path: "Sources/CLinux"),

        // librados: cluster connections, object I/O (whole-object reads and
        // writes, pipelined), compound guarded write ops, namespace listing,
        // RADOS locks and leases renewed in the background. Knows nothing of
        // backy; the RADOS store backend (ChunkStore) and the ceph-rbd
        // source use it.
        .target(name: "Rados", dependencies: ["CRBD"]),
        // How backy shows things to people: byte sizes, durations, ASCII
        // tables. No dependencies: every layer may use it.
        .target(name: "Presentation"),
        // Formats, the storage seam and its directory backend, jobs and
        // revisions, pins and locks. The bottom layer of the data path.
        .target(name: "ChunkStore", dependencies: [
            "CZstd", "CLZO", "CLibYAML", "Presentation", "Rados",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The sources (file, ceph-rbd) behind one protocol in Sources/, and
        // what backy does to a job in Operations/: backup, restore, verify,
        // purge, upgrade, quarantine.
        .target(name: "SourcesPlugins", dependencies: [
            "ChunkStore", "Presentation", "CRBD", "Rados",
            .product(name: "Logging", package: "swift-log"),
        ],
                path: "Sources/Sources-Plugins"),
        // What both servers (NBD, console) share: connection slots with
        // limits and eviction, burst-logged refusals, Unix socket listeners.
        .target(name: "ServerSupport", dependencies: [
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // Schedule math, daemon, console, status file, check. Runs backups
        // as child processes: it needs no source.
        .target(name: "Scheduler", dependencies: [
            "ChunkStore", "Rados", "ServerSupport", "Mount", "Presentation",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // Prometheus metrics of the scheduler's jobs: the snapshot, its text
        // form (swift-prometheus), the /metrics responder (SwiftNIO).
        .target(name: "BackyMetrics", dependencies: [
            "Scheduler", "ServerSupport", "ChunkStore",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // NBD protocol and exports over revisions.
        .target(name: "NBDServer", dependencies: [
            "ChunkStore", "ServerSupport", "Presentation",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // Revisions as read-only FUSE file systems (disk, partitions, their
        // files through fuse2fs), file restore and restore drills.
        .target(name: "Mount", dependencies: [
            "ChunkStore", "Presentation", "CFuse3", "CBlkid", "CLinux",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The command line: parse, call, print.
        .executableTarget(name: "backy", dependencies: [
            "ChunkStore", "SourcesPlugins", "Scheduler", "NBDServer", "Mount", "BackyMetrics", "Presentation", "Rados",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Shared by the test targets: replayable random generators.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ChunkStoreTests", dependencies: ["ChunkStore", "TestSupport"]),
        .testTarget(name: "SourcesPluginsTests", dependencies: [
            "SourcesPlugins", "ChunkStore", .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SchedulerTests", dependencies: ["Scheduler", "Mount", "ChunkStore"]),
        .testTarget(name: "NBDServerTests", dependencies: [
            "NBDServer", "ChunkStore", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "MountTests", dependencies: ["Mount", "ChunkStore"]),
        .testTarget(name: "PresentationTests", dependencies: ["Presentation"]),
        // The command line's own pieces (status output), tested in process.
        .testTarget(name: "BackyCLITests", dependencies: ["backy", "ChunkStore"]),
        // Runs the built `backy` binary (swift test builds it first).
        .testTarget(name: "EndToEndTests", dependencies: [
            "TestSupport",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
    ],
    // Swift 6 language mode (strict concurrency) for every target, tests
    // included; each remaining `@unchecked Sendable` and
    // `nonisolated(unsafe)` says in one line why it is safe.
    swiftLanguageModes: [.v6]
)
