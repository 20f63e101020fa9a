// CLZO: liblzo2 (Debian liblzo2-dev), to read chunks written by backy 2.4.
#include <lzo/lzo1x.h>

// lzo_init() is a macro; Swift calls this instead.
static inline int backy_lzo_init(void) { return lzo_init(); }
