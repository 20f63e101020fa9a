// CRBD: librados and librbd (Debian librados-dev, librbd-dev; no pkg-config files).
#include <rados/librados.h>
#include <rbd/librbd.h>
