// Fuzz target pinfile: what purge reads in `.pins/`, through References
// (the set of chunks purge must keep): a session's pin file (32-byte chunk
// ids, read incrementally) and a reader's pinned map link
// `<session>.<rev>.map` (a native map or a backy 2.4 JSON map, told apart by
// its first bytes). The same input is both.
import ChunkStore
import FuzzSupport

enum Target {
    static let session = "0123456789abcdef"
    static let pin = Fuzz.job.path + "/.pins/" + session + ".pin"
    static let link = Fuzz.job.path + "/.pins/" + session + "." + Fuzz.revisionID + ".map"
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        Fuzz.write(Target.pin, input)
        Fuzz.write(Target.link, input)
        let refs = References(job: Fuzz.job)
        if let set = try? refs.refresh() {
            Fuzz.check(set.native.count <= 2 * (input.count / 32) + 1, "\(set.native.count) chunk ids from \(input.count) bytes")
        }
    }
}

runFuzzer(fuzzOne)
