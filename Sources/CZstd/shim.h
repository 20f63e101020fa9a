// CZstd: the zstd compression library (Debian libzstd-dev), for chunk payloads.
#include <zstd.h>
