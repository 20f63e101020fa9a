#!/usr/bin/env python3
"""mkimage.py: writes a deterministic, VM-like raw disk image for benchmarks.

The image is a sequence of extents (64 KiB .. 16 MiB, 64 KiB aligned) whose
kinds are drawn with a seeded RNG: about 40 % zero (half left as holes, half
written as zeros), 30 % text-like data (lines of words from a fixed
vocabulary, compresses about 3:1 with zstd -1), 30 % random bytes.

    mkimage.py OUT SIZE_MIB [--seed N]
    mkimage.py --mutate IMAGE PERCENT [--seed N]   # change PERCENT % of 4 MiB blocks
"""
import argparse
import os
import random

MIB = 1024 * 1024
BLOCK = 4 * MIB


def vocabulary(r):
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]
    words = ["".join(r.choices(letters, weights, k=r.randint(2, 9))) for _ in range(4000)]
    words += ["kernel:", "systemd[1]:", "INFO", "WARNING", "error", "/var/lib", "/usr/share", "eth0",
              "192.168.0.1", "GET", "POST", "HTTP/1.1", "200", "404", "nginx", "postgres", "user", "session"]
    return words


def text_block(r, lines, size):
    out = bytearray()
    while len(out) < size:
        out += b"".join(r.choices(lines, k=256))
    return bytes(out[:size])


def make(path, size_mib, seed):
    r = random.Random(seed)
    words = vocabulary(r)
    lines = []
    for _ in range(20000):
        lines.append((" ".join(r.choices(words, k=r.randint(4, 14))) + "\n").encode())
    size = size_mib * MIB
    with open(path, "wb") as f:
        f.truncate(size)
        pos = 0
        stats = {"hole": 0, "zero": 0, "text": 0, "random": 0}
        while pos < size:
            length = min(size - pos, r.choice([1, 2, 4, 8, 16, 32, 64, 128, 256]) * 64 * 1024)
            kind = r.choices(["zero", "text", "random"], [40, 30, 30])[0]
            if kind == "zero":
                if r.random() < 0.5:
                    stats["hole"] += length
                else:
                    f.seek(pos)
                    f.write(bytes(length))
                    stats["zero"] += length
            elif kind == "text":
                f.seek(pos)
                f.write(text_block(r, lines, length))
                stats["text"] += length
            else:
                f.seek(pos)
                f.write(r.randbytes(length))
                stats["random"] += length
            pos += length
    total = sum(stats.values())
    print("wrote %s: %d MiB: %s" % (path, size_mib, ", ".join(
        "%s %.0f%%" % (k, 100.0 * v / total) for k, v in stats.items())))


def mutate(path, percent, seed):
    r = random.Random(seed)
    size = os.path.getsize(path)
    blocks = size // BLOCK
    chosen = r.sample(range(blocks), max(1, blocks * percent // 100))
    with open(path, "r+b") as f:
        for b in chosen:
            f.seek(b * BLOCK + r.randrange(0, BLOCK - 4096))
            f.write(r.randbytes(4096))
    print("changed %d of %d 4 MiB blocks of %s" % (len(chosen), blocks, path))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutate", action="store_true")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("path")
    ap.add_argument("amount", type=int)
    a = ap.parse_args()
    if a.mutate:
        mutate(a.path, a.amount, a.seed)
    else:
        make(a.path, a.amount, a.seed)
