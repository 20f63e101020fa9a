// CFuse3: libfuse3's high-level API for Swift. FUSE_USE_VERSION must be set
// before fuse.h is included; 3.12 is the first with a loop configuration
// (fuse_loop_cfg_*: thread counts). fuse_new and fuse_loop_mt are macros
// over versioned symbols, which Swift cannot call: the inline wrappers
// below can.
#ifndef BACKY_CFUSE3_SHIM_H
#define BACKY_CFUSE3_SHIM_H
#define FUSE_USE_VERSION 312
#include <fuse.h>
#include <stddef.h>

static inline struct fuse *backy_fuse_new(struct fuse_args *args, const struct fuse_operations *op, void *data) {
    return fuse_new(args, op, sizeof(*op), data);
}

/// Runs the multi-threaded loop with at most `max_threads` workers, keeping
/// `idle_threads` of them alive between bursts.
static inline int backy_fuse_loop_mt(struct fuse *f, unsigned max_threads, unsigned idle_threads) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg == NULL) return -1;
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, idle_threads);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    int rc = fuse_loop_mt(f, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

/// The private_data given to fuse_new, inside a callback.
static inline void *backy_fuse_private_data(void) {
    struct fuse_context *c = fuse_get_context();
    return c ? c->private_data : NULL;
}
#endif
