// Operation: runs a subcommand's work with logging set up the way backy 2.4
// does it: with -l the first log line is "$ argv" and the last "Backy
// operation complete." or "Backy operation failed."; errors become one
// "Error: ..." line on stderr and exit code 1 (or the error's own code).
import ArgumentParser
import ChunkStore
import Foundation
import Logging

enum Operation {
    // nonisolated(unsafe): set and read only by the command's own thread, before it starts any other.
    nonisolated(unsafe) static var logReady = false

    static func setUpLogging(_ g: GlobalOptions, quiet: Bool = false) {
        if logReady { return }
        logReady = true
        do {
            try BackyLog.bootstrap(logFile: g.logFile, verbose: g.isVerbose, quiet: quiet, errorsOnly: g.isQuiet)
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            Foundation.exit(1)
        }
    }

    /// Runs `body` as a logged backy operation and exits on failure.
    static func run(_ g: GlobalOptions, quiet: Bool = false, _ body: (Logger) throws -> Int32) throws {
        setUpLogging(g, quiet: quiet)
        let log = Logger(label: "backy")
        if g.logFile != nil {
            log.info("$ \(CommandLine.arguments.joined(separator: " "))")
        }
        let code: Int32
        do {
            code = try body(log)
        } catch let e as BackyError {
            if g.logFile != nil || BackyLog.hasJobLog {
                logToFileOnly(log, .error, e.message)
                logToFileOnly(log, .info, "Backy operation failed.")
            }
            printError(e.message)
            throw ExitCode(e.exitCode)
        } catch let e as ExitCode {
            throw e
        } catch {
            if g.logFile != nil || BackyLog.hasJobLog {
                logToFileOnly(log, .error, "\(error)")
                logToFileOnly(log, .info, "Backy operation failed.")
            }
            printError("\(error)")
            throw ExitCode(1)
        }
        if g.logFile != nil || BackyLog.hasJobLog {
            logToFileOnly(log, .info, code == 0 ? "Backy operation complete." : "Backy operation failed.")
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// The progress meter of a long operation: none with -q or
    /// --no-progress; a live line on stderr when it is a terminal (or with
    /// --progress); otherwise a log line every 10 % or 60 s.
    static func progress(_ g: GlobalOptions, log: Logger) -> ProgressMeter? {
        if g.isQuiet || g.progressChoice == false { return nil }
        if g.progressChoice == true || isatty(2) == 1 {
            return ProgressMeter(style: .live(fd: 2), log: log)
        }
        return ProgressMeter(style: .log(interval: 60), log: log)
    }

    /// Prints a command's result line on stdout, unless `-q` asked for
    /// errors only.
    static func say(_ g: GlobalOptions, _ line: String) {
        if !g.isQuiet { print(line) }
    }

    /// Prints the one "Error: ..." line on stderr.
    static func printError(_ msg: String) {
        FileHandle.standardError.write(Data("Error: \(msg)\n".utf8))
    }

    /// Opens the job directory. Without `-l`, commands that change or read
    /// out a job also log to the job's own `backy.log` (as the scheduler's
    /// runs do), besides stderr.
    static func openJob(_ g: GlobalOptions, log: Logger, jobLog: Bool = true) throws -> Job {
        let job = try Job(path: g.jobDir, logger: log)
        if jobLog && g.logFile == nil && !BackyLog.hasJobLog {
            let path = job.path + "/backy.log"
            if BackyLog.attachJobLog(path) {
                logToFileOnly(log, .info, "$ \(CommandLine.arguments.joined(separator: " "))")
            } else if let st = Posix.linkStatus(path), (st.st_mode & S_IFMT) != S_IFREG {
                log.warning("Not writing the job log \(path): it is not a regular file (a symlink?)")
            }
        }
        return job
    }

    /// A line for the log file(s) only: with -l that is the only sink; without
    /// it, stderr already shows the "Error:" line and needs no copy.
    static func logToFileOnly(_ log: Logger, _ level: Logger.Level, _ text: String) {
        BackyLog.fileOnly { log.log(level: level, "\(text)") }
    }
}
