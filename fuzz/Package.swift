// swift-tools-version:6.0
// backy's fuzz targets: one libFuzzer program per decoder of bytes that
// someone else could have written. A package of its own, so the main build
// and `make test` never build them; `make fuzz` and `make fuzz-ci` build it
// with -sanitize=fuzzer,address (see the Makefile and fuzz/README.md).
import PackageDescription

/// The targets and the backy libraries each one drives.
let targets: [(String, [String])] = [
    ("chunkfile", ["ChunkStore"]),
    ("chunkmap", ["ChunkStore"]),
    ("revision", ["ChunkStore", "Scheduler"]),
    ("jobconfig", ["ChunkStore", "SourcesPlugins"]),
    ("backyconf", ["ChunkStore", "Scheduler"]),
    ("legacymap", ["ChunkStore"]),
    ("lzo", ["ChunkStore"]),
    ("statusfile", ["ChunkStore", "Scheduler"]),
    ("verifiedindex", ["ChunkStore"]),
    ("pinfile", ["ChunkStore"]),
    ("console", ["ChunkStore", "Scheduler"]),
    ("jobpattern", ["Scheduler"]),
    ("nbdwire", ["NBDServer"]),
    ("nbdserver", ["ChunkStore", "NBDServer"]),
]

let package = Package(
    name: "backy-fuzz",
    dependencies: [
        .package(name: "backy", path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        // libFuzzer's driver and the allocation meter (C).
        .target(name: "CFuzzer"),
        // What every target shares: driver, memory budget, scratch job directory.
        .target(name: "FuzzSupport", dependencies: [
            "CFuzzer",
            .product(name: "ChunkStore", package: "backy"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ] + targets.map { name, libraries in
        .executableTarget(name: name, dependencies: ["FuzzSupport"] + libraries.map { .product(name: $0, package: "backy") })
    },
    swiftLanguageModes: [.v5]
)
