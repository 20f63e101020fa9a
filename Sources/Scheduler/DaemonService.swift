// DaemonService.swift — a service the scheduler daemon runs beside its jobs,
// injected by the command line so that this module needs no dependency on
// it: the in-process NBD server (`nbd-server: {in-scheduler: true}`) is one.
// The daemon starts each service after it took its lock and prepared the job
// directories, passes every successfully reloaded configuration on, and
// stops the services when it stops.

public protocol DaemonService: AnyObject {
    /// Starts the service; an error stops the daemon before it schedules anything.
    func start(_ config: SchedulerConfig) throws
    /// A reloaded configuration (jobs added or removed); errors are the service's to log.
    func reload(_ config: SchedulerConfig)
    func stop()
}
