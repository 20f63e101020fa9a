// CFuzzer: the allocation meter (see include/CFuzzer.h). The hooks run
// inside the allocator, so they are plain C and only touch atomics.
#define _XOPEN_SOURCE 700
#include "CFuzzer.h"
#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>

// From <sanitizer/allocator_interface.h>; weak, so a build without ASan links.
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *)) __attribute__((weak));
size_t __sanitizer_get_allocated_size(const volatile void *p) __attribute__((weak));

static _Atomic long long held;
static _Atomic long long peak;
static atomic_int started;

static void on_malloc(const volatile void *p, size_t n) {
    (void)p;
    long long now = atomic_fetch_add(&held, (long long)n) + (long long)n;
    long long pk = atomic_load(&peak);
    while (now > pk && !atomic_compare_exchange_weak(&peak, &pk, now)) {}
}

static void on_free(const volatile void *p) {
    if (p) atomic_fetch_sub(&held, (long long)__sanitizer_get_allocated_size(p));
}

int backy_fuzz_meter_available(void) {
    return __sanitizer_install_malloc_and_free_hooks != 0 && __sanitizer_get_allocated_size != 0;
}

void backy_fuzz_meter_start(void) {
    if (!backy_fuzz_meter_available() || atomic_exchange(&started, 1)) return;
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}

long long backy_fuzz_meter_reset(void) {
    long long now = atomic_load(&held);
    atomic_store(&peak, now);
    return now;
}

long long backy_fuzz_meter_peak(void) { return atomic_load(&peak); }

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

int backy_fuzz_remove_tree(const char *path) {
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
