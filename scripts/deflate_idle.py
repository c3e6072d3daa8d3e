#!/usr/bin/env python3
"""Idle memory per connection with permessage-deflate (BENCHMARKS.md, issue 17).

Usage: deflate_idle.py PATH_TO_WSEDGE [N]

Starts wsedge with [compression] enabled (one worker), opens N connections to
/echo with a given extension offer, and reads the server's RSS before and after
(VmRSS from /proc). Cases: no offer; `client_no_context_takeover`; Chromium's
offer (the server keeps a context); each after every connection sent one
compressed 2 KiB JSON message and read the compressed echo. Loopback only,
bounded by N (default 5000) and a 120 s deadline per case.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import zlib

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def upgrade(port, offer):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    ext = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
    s.sendall((f"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    agreed = b"permessage-deflate" in head
    return s, agreed


def frame(payload, rsv1):
    mask = b"\x11\x22\x33\x44"
    n = len(payload)
    b0 = 0x80 | 0x01 | (0x40 if rsv1 else 0)
    hdr = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big") if n >= 126 else bytes([b0, 0x80 | n])
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(s):
    buf = b""
    while True:
        if len(buf) >= 2:
            n = buf[1] & 0x7F
            h = 2
            if n == 126:
                if len(buf) < 4:
                    buf += s.recv(65536)
                    continue
                n, h = int.from_bytes(buf[2:4], "big"), 4
            if len(buf) >= h + n:
                return buf[h:h + n]
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("closed")
        buf += chunk


def case(binary, n, offer, send):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write("[server]\nworkers = 1\n[log]\nsummary_interval_ms = 0\n"
                "[compression]\nenabled = true\ncontext_takeover_connections = 100000\n")
        cfg = f.name
    proc = subprocess.Popen([binary, "--config", cfg, "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(re.search(r"listening on \S+:(\d+)", proc.stdout.readline()).group(1))
        time.sleep(0.3)
        before = rss_kib(proc.pid)
        socks, agreed = [], 0
        msg = ("[" + ",".join('{"symbol":"ACME","price":%d.25,"volume":%d}' % (i, i * 7)
                              for i in range(50)) + "]").encode()
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        compressed = z.compress(msg) + z.flush(zlib.Z_SYNC_FLUSH)
        compressed = compressed[:-4]
        for _ in range(n):
            s, ok = upgrade(port, offer)
            agreed += ok
            socks.append(s)
            if send:
                s.sendall(frame(compressed if ok else msg, ok))
                read_frame(s)
        time.sleep(1.0)
        after = rss_kib(proc.pid)
        for s in socks:
            s.close()
        return agreed, (after - before) / n
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.unlink(cfg)


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    cases = [
        ("no offer", None),
        ("client_no_context_takeover", "permessage-deflate; client_no_context_takeover"),
        ("Chromium's offer (context kept)", "permessage-deflate; client_max_window_bits"),
    ]
    print(f"| connections: {n:,} | agreed | idle KiB/conn | after one 2 KiB compressed message each |")
    print("|---|---:|---:|---:|")
    for label, offer in cases:
        agreed, idle = case(binary, n, offer, False)
        _, busy = case(binary, n, offer, True)
        print(f"| {label} | {agreed:,} | {idle:.2f} | {busy:.2f} |")


if __name__ == "__main__":
    main()
