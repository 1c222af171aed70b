#!/usr/bin/env python3
"""trace_streams.py — where a trace's bytes go: each stream of its events
records (docs/trace-format.md, section 4, version 2), raw and compressed
alone with `zstd -1`, in bytes per event.

usage: python3 bench/trace_streams.py TRACE.hkt.zst

The streams of every events record are concatenated per stream and each is
compressed by itself, so the figures add up to about the trace's own bytes
per event (the writer ends a zstd block at each stream). Needs the zstd
command. Two recordings of one workload by two builds, side by side, say
which stream a change moved."""
import subprocess
import sys

NAMES = "HEAD FLAGS TID TIME CLS PTR SIZE AUX CALLER STR SIZE_LO FREE_LO FREE_HI".split()


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def streams(raw):
    """Each stream's bytes over all events records, and the event count."""
    bufs = [bytearray() for _ in NAMES]
    events = 0
    i = raw.find(b"HKTE")
    while i >= 0:
        j = i + 4
        _, j = varint(raw, j)          # first_seq
        n, j = varint(raw, j)
        _, j = varint(raw, j)          # t0
        nstacks, j = varint(raw, j)
        for _ in range(nstacks):
            _, j = varint(raw, j)      # id
            depth, j = varint(raw, j)
            for _ in range(depth):
                _, j = varint(raw, j)
        ncallers, j = varint(raw, j)
        for _ in range(ncallers):
            _, j = varint(raw, j)
        lens = []
        for _ in NAMES:
            length, j = varint(raw, j)
            lens.append(length)
        for k, length in enumerate(lens):
            bufs[k] += raw[j:j + length]
            j += length
        events += n
        i = j if raw[j:j + 4] == b"HKTE" else -1   # records follow each other; HKTZ ends
    return bufs, events


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 bench/trace_streams.py TRACE.hkt.zst")
    raw = subprocess.run(["zstd", "-dc", sys.argv[1]], capture_output=True, check=True).stdout
    bufs, events = streams(raw)
    if not events:
        sys.exit("trace_streams: no events")
    total_raw = total_z = 0
    print("%-8s %8s %8s   (bytes per event)" % ("stream", "raw", "zstd -1"))
    for name, b in zip(NAMES, bufs):
        z = len(subprocess.run(["zstd", "-1", "-c", "-q"], input=bytes(b), capture_output=True,
                               check=True).stdout) if b else 0
        total_raw += len(b)
        total_z += z
        print("%-8s %8.3f %8.3f" % (name, len(b) / events, z / events))
    print("%-8s %8.3f %8.3f   %d events" % ("all", total_raw / events, total_z / events, events))


if __name__ == "__main__":
    main()
