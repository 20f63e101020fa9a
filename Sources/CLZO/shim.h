// CLZO: liblzo2 (Debian liblzo2-dev), to read chunks written by backy 2.4.
#include <lzo/lzo1x.h>
