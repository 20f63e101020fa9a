// Fuzz target jobconfig: a job's `config` (YAML: backy 2.4's flat source
// map or 2.5's {source: …, schedule: …}), read by Job.sourceConfig (size
// limit, UTF-8, YAML screening) and turned into a source by SourceFactory,
// as `backup` does (the file and Ceph sources only parse their keys here).
import ChunkStore
import FuzzSupport
import SourcesPlugins

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Fuzz.one(data, size) { input in
        Fuzz.write(Fuzz.job.configPath, input)
        guard let job = try? Job(path: Fuzz.job.path, logger: Fuzz.quiet),
              let config = try? job.sourceConfig() else { return }
        _ = try? SourceFactory.make(config: config, configPath: job.configPath)
    }
}

runFuzzer(fuzzOne)
