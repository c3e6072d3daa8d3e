#!/usr/bin/env python3
"""Server CPU and bytes on the wire with and without permessage-deflate
(BENCHMARKS.md, issue 17).

Usage: deflate_cost.py PATH_TO_WSEDGE

Server CPU is the server process's utime+stime (from /proc) per message,
robust to a loaded machine where throughput is not. Scenarios, each with
compression off (no offer) and on (`client_no_context_takeover` offered):
- echo: 20 connections, each sends 5,000 copies of a 2 KiB JSON text (client
  compresses when agreed) and reads every echo;
- fan-out: 1,000 subscribers in one room, one publisher sends 200 publishes
  of a 2 KiB JSON value; every subscriber reads every delivery.
Loopback only, bounded by the message counts above.
"""
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import zlib

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
TICK = os.sysconf("SC_CLK_TCK")
OFFER = "permessage-deflate; client_no_context_takeover"


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def upgrade(port, path, offer):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    ext = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    i = head.index(b"\r\n\r\n") + 4
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, b"permessage-deflate" in head[:i], head[i:]


def frame(payload, rsv1):
    mask = b"\x11\x22\x33\x44"
    n = len(payload)
    b0 = 0x81 | (0x40 if rsv1 else 0)
    hdr = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big") if n >= 126 else bytes([b0, 0x80 | n])
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Reader:
    """Counts whole frames and their wire bytes on one socket."""

    def __init__(self, sock, rest=b""):
        self.sock, self.buf, self.frames, self.wire = sock, rest, 0, 0

    def pump(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("closed")
        self.buf += chunk
        while len(self.buf) >= 2:
            n, h = self.buf[1] & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    break
                n, h = int.from_bytes(self.buf[2:4], "big"), 4
            if len(self.buf) < h + n:
                break
            self.frames += 1
            self.wire += h + n
            self.buf = self.buf[h + n:]


def read_until(readers, want):
    sel = selectors.DefaultSelector()
    for r in readers:
        sel.register(r.sock, selectors.EVENT_READ, r)
    deadline = time.time() + 300
    while sum(r.frames for r in readers) < want:
        if time.time() > deadline:
            raise RuntimeError("timeout")
        for key, _ in sel.select(timeout=5):
            key.data.pump()
    sel.close()


def server(binary):
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.write("[server]\nworkers = 1\n[log]\nsummary_interval_ms = 0\n[compression]\nenabled = true\n"
            "[pubsub]\nmax_subscribers_per_room = 0\n[write_queue]\nmax_bytes = 67108864\nhigh_water_bytes = 33554432\n")
    f.close()
    p = subprocess.Popen([binary, "--config", f.name, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(re.search(r"listening on \S+:(\d+)", p.stdout.readline()).group(1))
    os.unlink(f.name)
    return p, port


DOC = json.dumps([{"symbol": "ACME%d" % i, "price": 100 + i * 0.25, "volume": i * 17, "side": "buy"}
                  for i in range(32)]).encode()[:2048]
DOC = DOC[:DOC.rindex(b"},") + 1] + b"]"


def echo(binary, offer):
    p, port = server(binary)
    try:
        conns = [upgrade(port, "/echo", offer) for _ in range(20)]
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        z = comp.compress(DOC) + comp.flush(zlib.Z_SYNC_FLUSH)
        readers = [Reader(s, rest) for s, _, rest in conns]
        batch = b"".join(frame(z[:-4] if ok else DOC, ok) for _, ok, _ in conns[:1]) * 500
        c0 = cpu_s(p.pid)
        for s, ok, _ in conns:
            s.sendall((frame(z[:-4], True) if ok else frame(DOC, False)) * 5000)
        read_until(readers, 20 * 5000)
        c1 = cpu_s(p.pid)
        n = 20 * 5000
        return conns[0][1], (c1 - c0) / n * 1e6, sum(r.wire for r in readers) / n
    finally:
        p.terminate()
        p.wait(timeout=10)


def fanout(binary, offer):
    p, port = server(binary)
    try:
        subs = []
        for _ in range(1000):
            s, ok, rest = upgrade(port, "/ws", offer)
            s.sendall(frame(b'{"type":"subscribe","room":"ticks","id":1}', False))
            subs.append((s, ok, rest))
        readers = [Reader(s, rest) for s, _, rest in subs]
        read_until(readers, 2000)  # welcome + ack each
        for r in readers:
            r.frames = r.wire = 0
        pub, _, _ = upgrade(port, "/ws", None)
        msg = b'{"type":"publish","room":"ticks","data":' + DOC + b"}"
        c0 = cpu_s(p.pid)
        pub.sendall(frame(msg, False) * 200)
        read_until(readers, 1000 * 200)
        c1 = cpu_s(p.pid)
        return subs[0][1], (c1 - c0) / 200 * 1e6, sum(r.wire for r in readers) / (1000 * 200)
    finally:
        p.terminate()
        p.wait(timeout=10)


def main():
    binary = sys.argv[1]
    print(f"payload: {len(DOC)} bytes of JSON")
    print("| scenario | compression | server CPU | bytes on the wire per message |")
    print("|---|---|---:|---:|")
    for name, fn, unit in (("echo 2 KiB JSON", echo, "µs/msg"),
                           ("fan-out to 1,000, 2 KiB JSON", fanout, "µs/publish")):
        for offer in (None, OFFER):
            agreed, cpu, wire = fn(binary, offer)
            label = "agreed" if agreed else "off"
            print(f"| {name} | {label} | {cpu:.1f} {unit} | {wire:.0f} |")


if __name__ == "__main__":
    main()
