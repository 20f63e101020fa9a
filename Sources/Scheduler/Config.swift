// Config.swift — the scheduler's configuration file (`/etc/backy.conf`, every key
// in backy.conf.example): `global` (base-dir, worker-limit, status-file, status-interval,
// telnet-addrs, telnet-port, drill), `schedules` (name → tag → {interval, keep}) and
// `jobs` (name → {schedule, source, drill}). Every problem is reported as one line naming the
// file, the line (where the YAML parser knows it) and the key, e.g.
// `/etc/backy.conf: line 12: jobs.test01.schedule: unknown schedule "hourly"`.
// The servers' keys (console socket, `nbd-server`) are read in ConfigServers.swift,
// the monitoring keys (failures-warning/-critical, metrics-addrs/-port) in
// ConfigMonitoring.swift. `analyze` goes on after an error and returns every
// error and, as warnings, every key it does not know (`backy check-config`);
// `load` throws the first error.
//
// Relative paths (`base-dir`, `status-file`, and a `file` source's `filename`)
// are resolved against the directory of the configuration file.

import ChunkStore
import Foundation

/// A configuration problem: one line of text for the operator.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One job of the configuration.
public struct JobDefinition: Equatable, Sendable {
    /// The job name (also the name of its directory below base-dir).
    public var name: String
    /// The name of its schedule.
    public var scheduleName: String
    /// The schedule itself.
    public var schedule: Schedule
    /// The source description written to the job's `config` (relative file names
    /// already made absolute).
    public var source: YAMLMap
    /// Seconds between scheduled restore drills (`drill`), nil for none.
    public var drillInterval: Int?
    /// Where the job's history lives (`store: rados:POOL[/NAMESPACE]`,
    /// global or per job; namespace = the job's name), nil for its directory.
    public var store: RadosStoreSpec?
    /// The nodes that may run the job (`nodes: [a, b]`), nil for every node
    /// (ConfigCluster.swift).
    public var nodes: [String]?

    public init(name: String, scheduleName: String, schedule: Schedule, source: YAMLMap, drillInterval: Int? = nil,
                store: RadosStoreSpec? = nil, nodes: [String]? = nil) {
        self.name = name
        self.scheduleName = scheduleName
        self.schedule = schedule
        self.source = source
        self.drillInterval = drillInterval
        self.store = store
        self.nodes = nodes
    }

    /// The job's spread (Spread).
    public var spread: Int { Scheduler.spread(jobName: name, maxInterval: schedule.maxInterval) }
}

/// The parsed scheduler configuration.
public struct SchedulerConfig: Sendable {
    /// Absolute path of the configuration file.
    public var path: String
    public var baseDir: String
    public var workerLimit: Int
    public var statusFile: String
    public var statusInterval: Int
    public var telnetAddrs: [String]
    public var telnetPort: Int
    /// The console's Unix socket (mode 0660, group `consoleSocketGroup`), if any.
    public var consoleSocket: String?
    public var consoleSocketGroup: String?
    public var consoleMaxConnections = SchedulerConfig.defaultConsoleMaxConnections
    /// The `nbd-server` section.
    public var nbd = NBDSettings()
    /// Schedules by name.
    public var schedules: [String: Schedule]
    /// Jobs sorted by name.
    public var jobs: [JobDefinition]
    /// `global.group-access`: new job directories are 0750 instead of 0700.
    public var groupAccess = false
    /// `global.failures-warning`, `failures-critical`, `metrics-addrs`,
    /// `metrics-port` (ConfigMonitoring.swift).
    public var monitoring = MonitoringSettings()
    /// The pool of `global.store` (every job's default store), if set.
    public var globalStorePool: String?
    /// `global.lease` and `node-name` (ConfigCluster.swift).
    public var cluster = ClusterSettings()

    public static let defaultPath = "/etc/backy.conf"
    public static let defaultBaseDir = "/srv/backy"
    public static let defaultTelnetAddrs = "::1, 127.0.0.1"
    public static let defaultTelnetPort = 6023
    public static let defaultStatusInterval = 30

    /// Reads and validates the configuration file.
    public static func load(path: String) throws -> SchedulerConfig {
        let (abs, text) = try readFile(path)
        return try parse(text, path: abs)
    }

    /// Only the `global` section, for `backy check` (which must work even while the
    /// jobs section has an error the daemon refused on reload).
    public static func loadGlobal(path: String) throws -> SchedulerConfig {
        let (abs, text) = try readFile(path)
        return try parse(text, path: abs, globalOnly: true)
    }

    static func readFile(_ path: String) throws -> (String, String) {
        let abs = absolutePath(path, relativeTo: FileManager.default.currentDirectoryPath)
        guard Posix.exists(abs) else {
            throw ConfigError("configuration file \(abs) does not exist")
        }
        guard !Posix.isDirectory(abs) else {
            throw ConfigError("configuration file \(abs) is a directory")
        }
        let bytes: [UInt8]
        do {
            bytes = try Posix.readFile(abs, limit: Posix.Limit.configuration)
        } catch {
            throw ConfigError("cannot read configuration file \(abs): \(error)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError("\(abs): not valid UTF-8")
        }
        return (abs, text)
    }

    /// What `analyze` found: every error, every warning (unknown keys), and
    /// the configuration if there was no error.
    public struct Report: Sendable {
        public var errors: [ConfigError]
        public var warnings: [ConfigError]
        public var config: SchedulerConfig?
        /// What could be read despite errors (the global section and the
        /// jobs without errors), nil if not even that.
        public var partial: SchedulerConfig?
        /// Every job named in `jobs` (with or without errors).
        public var jobNames: [String] = []
    }

    /// Reads the file and checks all of it (`backy check-config`); a file
    /// that cannot be read is one error.
    public static func check(path: String) -> Report {
        do {
            let (abs, text) = try readFile(path)
            return analyze(text, path: abs)
        } catch let e as ConfigError {
            return Report(errors: [e], warnings: [], config: nil, partial: nil)
        } catch {
            return Report(errors: [ConfigError("\(path): \(error)")], warnings: [], config: nil, partial: nil)
        }
    }

    /// Parses configuration text; `path` names the file in messages and is the base of
    /// relative paths. Throws the first error.
    public static func parse(_ text: String, path: String, globalOnly: Bool = false) throws -> SchedulerConfig {
        let r = analyze(text, path: path, globalOnly: globalOnly)
        if let e = r.errors.first { throw e }
        return r.config!
    }

    /// Parses configuration text and goes on after errors: every error and
    /// every unknown key (a warning), each with its line where known.
    public static func analyze(_ text: String, path: String, globalOnly: Bool = false) -> Report {
        let p = Problems(path: path)
        let config = analyze(text, path: path, globalOnly: globalOnly, problems: p)
        return Report(errors: p.errors, warnings: p.warnings, config: p.errors.isEmpty ? config : nil, partial: config,
                      jobNames: p.jobNames)
    }

    static let knownTop: Set<String> = ["global", "schedules", "jobs", "nbd-server"]
    static let knownGlobal: Set<String> = Set([
        "base-dir", "worker-limit", "status-file", "status-interval", "telnet-addrs", "telnet-port", "group-access", "drill", "store",
        "console-socket", "console-socket-group", "console-max-connections",
    ]).union(MonitoringSettings.keys).union(ClusterSettings.keys)
    static let knownJob: Set<String> = ["schedule", "source", "drill", "store", "nodes"]
    static let knownScheduleEntry: Set<String> = ["interval", "keep"]

    private static func analyze(_ text: String, path: String, globalOnly: Bool, problems p: Problems) -> SchedulerConfig? {
        let configDir = Posix.parentDirectory(path)
        let root: YAMLValue
        do {
            root = try YAML.parse(text, source: path)
        } catch let e as BackyError {
            p.errors.append(ConfigError(e.message))
            return nil
        } catch {
            p.errors.append(ConfigError("\(path): \(error)"))
            return nil
        }
        guard let top = root.map else {
            p.errors.append(p.error(nil, "", "the configuration must be a YAML mapping with global, schedules and jobs (found \(root.kindName))"))
            return nil
        }
        p.warnUnknown(top, known: knownTop, prefix: "")

        // global
        var baseDir = defaultBaseDir
        var workerLimit = 1
        var statusFile: String?
        var statusInterval = defaultStatusInterval
        var addrsText = defaultTelnetAddrs
        var telnetPort = defaultTelnetPort
        var groupAccess = false
        var drillDefault: Int?
        var globalMap: YAMLMap?
        var storeDefault: String?
        if let g = top["global"], !g.isNull {
            if let gm = g.map {
                globalMap = gm
                p.warnUnknown(gm, known: knownGlobal, prefix: "global")
                p.attempt {
                    if let v = gm["base-dir"] {
                        guard let s = v.string, !s.isEmpty, v.map == nil else { throw p.error(gm, "base-dir", "expected a directory path", prefix: "global") }
                        baseDir = s
                    }
                }
                p.attempt {
                    if let v = gm["worker-limit"] {
                        guard let n = v.int, n >= 1, n <= 1000 else { throw p.error(gm, "worker-limit", "expected an integer from 1 to 1000, found \(show(v))", prefix: "global") }
                        workerLimit = Int(n)
                    }
                }
                p.attempt {
                    if let v = gm["status-file"] {
                        guard let s = v.string, !s.isEmpty else { throw p.error(gm, "status-file", "expected a file path", prefix: "global") }
                        statusFile = s
                    }
                }
                p.attempt {
                    if let v = gm["status-interval"] {
                        if case .int(let n) = v {
                            guard n >= 1, n <= 86400 else { throw p.error(gm, "status-interval", "expected seconds from 1 to 86400, found \(n)", prefix: "global") }
                            statusInterval = Int(n)
                        } else if let s = v.string, let n = try? parseDuration(s), n <= 86400 {
                            statusInterval = n
                        } else {
                            throw p.error(gm, "status-interval", "expected a number of seconds, found \(show(v))", prefix: "global")
                        }
                    }
                }
                p.attempt {
                    if let v = gm["telnet-addrs"] {
                        if let l = v.list {
                            let parts = l.compactMap(\.string)
                            guard parts.count == l.count else { throw p.error(gm, "telnet-addrs", "expected addresses", prefix: "global") }
                            addrsText = parts.joined(separator: ",")
                        } else if let s = v.string {
                            addrsText = s
                        } else {
                            throw p.error(gm, "telnet-addrs", "expected a comma-separated list of addresses, found \(show(v))", prefix: "global")
                        }
                    }
                }
                p.attempt {
                    if let v = gm["group-access"] {
                        guard let b = v.bool else { throw p.error(gm, "group-access", "expected true or false, found \(show(v))", prefix: "global") }
                        groupAccess = b
                    }
                }
                p.attempt {
                    if let v = gm["telnet-port"] {
                        guard let n = v.int, n >= 1, n <= 65535 else { throw p.error(gm, "telnet-port", "expected a port number from 1 to 65535, found \(show(v))", prefix: "global") }
                        telnetPort = Int(n)
                    }
                }
                p.attempt {
                    if let v = gm["drill"] {
                        drillDefault = try DrillSchedule.parseInterval(v, key: "drill", map: gm, prefix: "global", problems: p)
                    }
                }
                p.attempt {
                    if let v = gm["store"], !v.isNull {
                        guard let s = v.string, RadosStoreSpec.isRados(s), !s.dropFirst(RadosStoreSpec.scheme.count).contains("/"),
                              (try? RadosStoreSpec.parse(s, defaultNamespace: "x")) != nil else {
                            throw p.error(gm, "store", "expected rados:POOL (each job's namespace is its name), found \(show(v))", prefix: "global")
                        }
                        storeDefault = s
                    }
                }
            } else {
                p.errors.append(p.error(top, "global", "expected a mapping, found \(g.kindName)"))
            }
        }
        let addrs = addrsText.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        baseDir = standardize(absolutePath(baseDir, relativeTo: configDir))
        let status = standardize(statusFile.map { absolutePath($0, relativeTo: configDir) } ?? baseDir + "/status")

        var config = SchedulerConfig(path: path, baseDir: baseDir, workerLimit: workerLimit, statusFile: status,
                                     statusInterval: statusInterval, telnetAddrs: addrs, telnetPort: telnetPort,
                                     schedules: [:], jobs: [])
        config.groupAccess = groupAccess
        if let gm = globalMap {
            p.attempt { try parseConsoleKeys(gm, into: &config, problems: p, configDir: configDir) }
            config.monitoring = parseMonitoring(gm, problems: p)
            config.cluster = parseCluster(gm, problems: p)
            config.globalStorePool = storeDefault.flatMap { try? RadosStoreSpec.parse($0, defaultNamespace: "x").pool }
        }
        if globalOnly { return config }
        p.attempt { config.nbd = try parseNBD(top, problems: p, configDir: configDir) }

        // schedules
        var sm = YAMLMap()
        var brokenSchedules = Set<String>()
        if let sv = top["schedules"] {
            if let m = sv.map {
                sm = m
            } else {
                p.errors.append(p.error(top, "schedules", "expected a mapping of schedule name → tag → {interval, keep}, found \(sv.kindName)"))
            }
        } else {
            p.errors.append(p.error(nil, "schedules", "missing (a mapping of schedule name → tag → {interval, keep})"))
        }
        for name in sm.keys {
            let ok = p.attempt {
                let key = "schedules.\(name)"
                guard let tm = sm[name]!.map, !tm.isEmpty else {
                    throw p.error(sm, name, "expected a mapping of tag → {interval, keep}", prefix: "schedules")
                }
                var entries: [String: ScheduleTag] = [:]
                var tagErrors = false
                for tag in tm.keys {
                    let ok = p.attempt {
                        guard isValidTag(tag) else {
                            throw p.error(tm, tag, "invalid tag name (tags must not be empty or contain commas or spaces)", prefix: key)
                        }
                        guard let em = tm[tag]!.map else {
                            throw p.error(tm, tag, "expected {interval: …, keep: …}, found \(tm[tag]!.kindName)", prefix: key)
                        }
                        let tagKey = "\(key).\(tag)"
                        p.warnUnknown(em, known: knownScheduleEntry, prefix: tagKey)
                        var seconds = 0
                        var keep = 0
                        let intervalOK = p.attempt {
                            guard let iv = em["interval"] else { throw p.error(tm, tag, "missing interval", prefix: key, keySuffix: ".interval") }
                            guard let itext = iv.string, iv.map == nil else {
                                throw p.error(em, "interval", "expected a duration such as 1d, 12h, 30m or 10s, found \(show(iv))", prefix: tagKey)
                            }
                            do {
                                seconds = try parseDuration(itext)
                            } catch let e as DurationError {
                                throw p.error(em, "interval", e.description, prefix: tagKey)
                            }
                        }
                        let keepOK = p.attempt {
                            guard let kv = em["keep"] else { throw p.error(tm, tag, "missing keep", prefix: key, keySuffix: ".keep") }
                            guard case .int(let k) = kv, k >= 1, k <= 1_000_000 else {
                                throw p.error(em, "keep", "expected a positive integer, found \(show(kv))", prefix: tagKey)
                            }
                            keep = Int(k)
                        }
                        if intervalOK && keepOK { entries[tag] = ScheduleTag(interval: seconds, keep: keep) } else { tagErrors = true }
                    }
                    if !ok { tagErrors = true }
                }
                if tagErrors { brokenSchedules.insert(name); return }
                do {
                    config.schedules[name] = try Schedule(entries)
                } catch let e as ScheduleError {
                    throw p.error(sm, name, e.description, prefix: "schedules")
                }
            }
            if !ok { brokenSchedules.insert(name) }
        }

        // jobs
        var jm = YAMLMap()
        if let jv = top["jobs"] {
            if jv.isNull {
            } else if let m = jv.map {
                jm = m
            } else {
                p.errors.append(p.error(top, "jobs", "expected a mapping of job name → {schedule, source}, found \(jv.kindName)"))
            }
        } else {
            p.errors.append(p.error(nil, "jobs", "missing (a mapping of job name → {schedule, source})"))
        }
        p.jobNames = jm.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        let statusName = (status as NSString).lastPathComponent
        let statusInBase = Posix.parentDirectory(status) == baseDir
        for name in jm.keys {
            p.attempt {
                if let why = invalidJobName(name) { throw p.error(jm, name, "invalid job name: \(why)", prefix: "jobs") }
                if statusInBase && name == statusName {
                    throw p.error(jm, name, "a job cannot be named like the status file \(status)", prefix: "jobs")
                }
                let key = "jobs.\(name)"
                guard let job = jm[name]!.map else {
                    throw p.error(jm, name, "expected {schedule: …, source: {type: …}}, found \(jm[name]!.kindName)", prefix: "jobs")
                }
                p.warnUnknown(job, known: knownJob, prefix: key)
                var schedule: Schedule?
                var schedName = ""
                var source: YAMLMap?
                var drill = drillDefault
                let schedOK = p.attempt {
                    guard let schedV = job["schedule"] else { throw p.error(jm, name, "missing schedule", prefix: "jobs", keySuffix: ".schedule") }
                    guard let n = schedV.string, schedV.map == nil else {
                        throw p.error(job, "schedule", "expected the name of a schedule, found \(show(schedV))", prefix: key)
                    }
                    schedName = n
                    // A schedule with its own error was reported already.
                    if brokenSchedules.contains(n) { return }
                    guard let s = config.schedules[n] else {
                        let known = sm.keys.sorted().joined(separator: ", ")
                        throw p.error(job, "schedule", "unknown schedule \"\(n)\" (defined: \(known.isEmpty ? "none" : known))", prefix: key)
                    }
                    schedule = s
                }
                let sourceOK = p.attempt {
                    guard let srcV = job["source"] else { throw p.error(jm, name, "missing source", prefix: "jobs", keySuffix: ".source") }
                    guard var src = srcV.map else {
                        throw p.error(job, "source", "expected a mapping such as {type: file, filename: /path}, found \(srcV.kindName)", prefix: key)
                    }
                    try validateSource(&src, key: key + ".source", job: job, problems: p, configDir: configDir)
                    source = src
                }
                let drillOK = p.attempt {
                    if let v = job["drill"] { drill = try DrillSchedule.parseInterval(v, key: "drill", map: job, prefix: key, problems: p) }
                }
                var store: RadosStoreSpec?
                let storeOK = p.attempt {
                    if let v = job["store"], !v.isNull {
                        guard let s = v.string, let spec = try? RadosStoreSpec.parse(s, defaultNamespace: name) else {
                            throw p.error(job, "store", "expected rados:POOL[/NAMESPACE], found \(show(v))", prefix: key)
                        }
                        store = spec
                    } else if let s = storeDefault {
                        store = try? RadosStoreSpec.parse(s, defaultNamespace: name)
                    }
                }
                var nodes: [String]?
                let nodesOK = p.attempt { nodes = try parseNodes(job, key: key, problems: p) }
                guard schedOK && sourceOK && drillOK && storeOK && nodesOK, let schedule, let source else { return }
                config.jobs.append(JobDefinition(name: name, scheduleName: schedName, schedule: schedule, source: source,
                                                 drillInterval: drill, store: store, nodes: nodes))
            }
        }
        config.jobs.sort { $0.name.unicodeScalars.lexicographicallyPrecedes($1.name.unicodeScalars) }
        return config
    }

    /// Checks the keys a source type needs (backy.conf.example) and makes a relative
    /// `filename` of a file source absolute.
    static func validateSource(_ source: inout YAMLMap, key: String, job: YAMLMap, problems p: Problems, configDir: String) throws {
        guard let tv = source["type"] else {
            throw p.error(job, "source", "missing type (one of \(SourceTypes.known.joined(separator: ", ")))", prefix: key.dropLastComponent, keySuffix: ".type")
        }
        guard let type = tv.string, SourceTypes.known.contains(type) else {
            throw p.error(source, "type", "unknown source type \(show(tv)) (known: \(SourceTypes.known.joined(separator: ", ")))", prefix: key)
        }
        p.warnUnknown(source, known: SourceTypes.knownKeys(type: type), prefix: key)
        func need(_ k: String) throws {
            guard let v = source[k] else {
                throw p.error(job, "source", "missing \(k) (required for type \(type))", prefix: key.dropLastComponent, keySuffix: ".\(k)")
            }
            guard let s = v.string, !s.isEmpty, v.map == nil else {
                throw p.error(source, k, "expected a non-empty string, found \(show(v))", prefix: key)
            }
        }
        switch type {
        case "file":
            try need("filename")
            let f = source["filename"]!.string!
            if !f.hasPrefix("/") { source["filename"] = .string(standardize(absolutePath(f, relativeTo: configDir))) }
        case "ceph-rbd":
            try need("pool"); try need("image")
        case "flyingcircus":
            try need("pool"); try need("image"); try need("vm")
        default:
            break
        }
    }

    static func isValidTag(_ tag: String) -> Bool {
        !tag.isEmpty && !tag.contains(where: { $0 == "," || $0.isWhitespace || $0.isNewline || $0 == ";" })
    }

    /// Why a job name cannot be a directory name below base-dir, or nil.
    static func invalidJobName(_ name: String) -> String? {
        if name.isEmpty { return "empty" }
        if name.hasPrefix(".") { return "must not start with a dot" }
        if name.contains("/") { return "must not contain /" }
        if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) { return "must not contain control characters" }
        if name.contains(where: { $0.isWhitespace }) { return "must not contain spaces" }
        if name.utf8.count > 255 { return "too long" }
        return nil
    }

    static func show(_ v: YAMLValue) -> String {
        switch v {
        case .string(let s): return "\"\(s)\""
        case .int, .double, .bool: return v.string ?? v.kindName
        default: return v.kindName
        }
    }

    static func absolutePath(_ path: String, relativeTo dir: String) -> String {
        if path.hasPrefix("/") { return path }
        if path == "~" || path.hasPrefix("~/") { return (path as NSString).expandingTildeInPath }
        return dir + "/" + path
    }

    /// Removes `.`/`..` components and duplicate slashes without resolving symlinks.
    static func standardize(_ path: String) -> String {
        var parts: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }
}

/// Formats configuration errors: "<file>: line N: <key>: <what>", and
/// collects them (and warnings) while `analyze` goes on.
final class Problems {
    let path: String
    var errors: [ConfigError] = []
    var warnings: [ConfigError] = []
    var jobNames: [String] = []

    init(path: String) { self.path = path }

    func error(_ map: YAMLMap?, _ key: String, _ what: String, prefix: String = "", keySuffix: String = "") -> ConfigError {
        var full = prefix.isEmpty ? key : "\(prefix).\(key)"
        full += keySuffix
        var out = path + ": "
        if let line = map?.line(of: key) { out += "line \(line): " }
        if !full.isEmpty { out += full + ": " }
        return ConfigError(out + what)
    }

    /// Runs one check; a ConfigError it throws is recorded. Returns whether
    /// it passed.
    @discardableResult
    func attempt(_ body: () throws -> Void) -> Bool {
        do {
            try body()
            return true
        } catch let e as ConfigError {
            errors.append(e)
        } catch {
            errors.append(ConfigError("\(path): \(error)"))
        }
        return false
    }

    /// One warning per key of `map` that is not in `known`.
    func warnUnknown(_ map: YAMLMap, known: Set<String>, prefix: String) {
        for k in map.keys where !known.contains(k) {
            warnings.append(error(map, k, "unknown key, ignored (known: \(known.sorted().joined(separator: ", ")))", prefix: prefix))
        }
    }
}

extension String {
    /// "a.b.c" → "a.b"
    fileprivate var dropLastComponent: String {
        guard let dot = lastIndex(of: ".") else { return "" }
        return String(self[..<dot])
    }
}
