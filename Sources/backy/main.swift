// backy: the command line. Parses arguments and dispatches to the
// subcommands; all work happens in the libraries.
import ArgumentParser
import ChunkStore
import Foundation
import Mount

struct Backy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backy",
        abstract: "Backup and restore for block devices.",
        usage: "backy [-h] [-v] [-l LOGFILE] [-b BACKUPDIR] {init,backup,restore,purge,copy,set-store,find,status,nbd-server,mount,umount,files,get,drill,upgrade,scheduler,check,check-config,expire,metrics,distrust,verify,forget} ...",
        discussion: "Global options (-v, -q, --progress/--no-progress, -l FILE, -b DIR) go before the subcommand, as in backy 2.4, or after it.",
        version: BackyVersion.description,
        subcommands: [InitCommand.self, BackupCommand.self, RestoreCommand.self, FindCommand.self, StatusCommand.self, PurgeCommand.self, VerifyCommand.self, DistrustCommand.self, ForgetCommand.self, UpgradeCommand.self, CopyCommand.self, SetStoreCommand.self, SchedulerCommand.self, CheckCommand.self, CheckConfigCommand.self, ExpireCommand.self, MetricsCommand.self, NBDServerCommand.self, MountCommand.self, UmountCommand.self, FilesCommand.self, GetCommand.self, DrillCommand.self])
    @OptionGroup var global: GlobalOptions

    func run() throws {
        // Like backy 2.4: with no subcommand print the usage line, exit 0.
        print("usage: " + (Backy.configuration.usage ?? "backy"))
    }
}

StdoutBuffering.lineBuffered()
ToolEnvironment.current = BackyEnvironment.tools
// Tests only: die at a named step of a backup's writes (CrashPoints).
if let spec = BackyEnvironment.crashAt {
    do {
        let (point, hit) = try CrashPoints.parse(spec)
        CrashPoints.arm(point, hit: hit)
    } catch {
        FileHandle.standardError.write(Data("Error: BACKY_CRASH_AT: \(error)\n".utf8))
        exit(2)
    }
}
StoreFactory.cephEnvironment = BackyEnvironment.sources.ceph
let rawArgs = Array(CommandLine.arguments.dropFirst())
switch GlobalOptions.extractLeading(rawArgs) {
case .failure(let e):
    FileHandle.standardError.write(Data("Error: \(e.message)\n".utf8))
    exit(2)
case .success(let rest):
    do {
        var command = try Backy.parseAsRoot(rest)
        try command.run()
    } catch {
        let code = Backy.exitCode(for: error)
        if code == .validationFailure {
            // Usage errors exit 2, as backy 2.4's argparse does.
            FileHandle.standardError.write(Data((Backy.fullMessage(for: error) + "\n").utf8))
            exit(2)
        }
        Backy.exit(withError: error)
    }
}
