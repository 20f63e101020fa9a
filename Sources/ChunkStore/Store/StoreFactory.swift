// StoreFactory: opens the store of a job directory. Today every job's store
// is its directory (DirectoryBackend); a `store:` key in the job's local
// `config` choosing another backend (Ceph RADOS, next) will be read here and
// nowhere else.

public enum StoreFactory {
    /// The store of the job whose directory (a real path) is `jobPath`.
    public static func open(jobPath: String) -> StoreBackend {
        DirectoryBackend(jobPath: jobPath)
    }
}
