// CBlkid: util-linux's libblkid (partition tables and filesystem types).
#ifndef BACKY_CBLKID_SHIM_H
#define BACKY_CBLKID_SHIM_H
#include <blkid.h>
#endif
