// CFuzzer: libFuzzer's driver entry point, and the allocation meter the fuzz
// targets use to hold a decoder to its memory budget (AddressSanitizer's
// allocator hooks; without ASan the meter reads 0).
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

/// Starts counting the bytes allocated and freed (idempotent).
void backy_fuzz_meter_start(void);
/// Whether the meter works (the program runs under AddressSanitizer).
int backy_fuzz_meter_available(void);
/// Sets the peak to the bytes held now and returns them.
long long backy_fuzz_meter_reset(void);
/// The most bytes held at once since the last reset.
long long backy_fuzz_meter_peak(void);

/// Removes a directory tree (the scratch directory at exit); 0 on success.
int backy_fuzz_remove_tree(const char *path);
