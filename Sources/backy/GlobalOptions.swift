// GlobalOptions: `-v`, `-q`, `-l FILE`, `-b DIR`, `--progress`/`--no-progress`,
// accepted before the subcommand
// (backy 2.4's syntax) and after it; values before the subcommand are
// picked out of argv before ArgumentParser sees the rest.
import ArgumentParser

struct GlobalOptions: ParsableArguments {
    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Log debug messages: each phase, each decision about the source, each lock.")
    var verbose = false

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print only errors on the terminal (log files still get everything); no progress.")
    var quiet = false

    @Flag(name: .customLong("progress"), inversion: .prefixedNo,
          help: "Show progress (default: a live line on a terminal, a log line every 10 % or 60 s otherwise).")
    var progress: Bool?

    @Option(name: [.customShort("l"), .customLong("logfile")], help: ArgumentHelp("Append log lines to FILE (reopened after rotation); default: stderr.", valueName: "FILE"))
    var logfile: String?

    @Option(name: [.customShort("b"), .customLong("backupdir")], help: ArgumentHelp("The job directory.", valueName: "DIR"))
    var backupdir: String?

    /// Values given before the subcommand.
    // nonisolated(unsafe): written by extractLeading() in main before the command runs, only read after.
    nonisolated(unsafe) static var leading = (verbose: false, quiet: false, progress: Bool?.none, logfile: String?.none, backupdir: String?.none)

    var isVerbose: Bool { verbose || GlobalOptions.leading.verbose }
    var isQuiet: Bool { quiet || GlobalOptions.leading.quiet }
    /// --progress / --no-progress (nil: decide by the terminal).
    var progressChoice: Bool? { progress ?? GlobalOptions.leading.progress }
    var logFile: String? { logfile ?? GlobalOptions.leading.logfile }
    var jobDir: String { backupdir ?? GlobalOptions.leading.backupdir ?? "." }

    /// Removes leading global options from `args` (program name excluded)
    /// and records them. Returns the rest, or an error message.
    struct UsageError: Error { let message: String }

    static func extractLeading(_ args: [String]) -> Result<[String], UsageError> {
        var i = 0
        func value(_ name: String) -> Result<String, UsageError> {
            if i + 1 < args.count { i += 1; return .success(args[i]) }
            return .failure(UsageError(message: "Missing value for '\(name)'"))
        }
        while i < args.count {
            let a = args[i]
            switch a {
            case "-v", "--verbose": leading.verbose = true
            case "-q", "--quiet": leading.quiet = true
            case "--progress": leading.progress = true
            case "--no-progress": leading.progress = false
            case "-l", "--logfile":
                switch value(a) { case .success(let v): leading.logfile = v; case .failure(let e): return .failure(e) }
            case "-b", "--backupdir":
                switch value(a) { case .success(let v): leading.backupdir = v; case .failure(let e): return .failure(e) }
            default:
                if a.hasPrefix("--logfile=") { leading.logfile = String(a.dropFirst(10)) }
                else if a.hasPrefix("--backupdir=") { leading.backupdir = String(a.dropFirst(12)) }
                else if a.hasPrefix("-l") && a.count > 2 && !a.hasPrefix("--") { leading.logfile = String(a.dropFirst(2)) }
                else if a.hasPrefix("-b") && a.count > 2 && !a.hasPrefix("--") { leading.backupdir = String(a.dropFirst(2)) }
                else { return .success(Array(args[i...])) }
            }
            i += 1
        }
        return .success([])
    }
}
