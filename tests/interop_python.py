"""Interop with a client that is not Rust: Python's `websockets` package.

Starts the release server binary on an ephemeral port, then does an echo round
trip of a text message and a 1 MiB binary message, and a clean close; then,
against a server with `[compression] enabled`, the same with permessage-deflate
negotiated by websockets' own offer.
Usage: python tests/interop_python.py PATH_TO_WSEDGE
"""
import json
import os
import re
import subprocess
import sys
import tempfile

from websockets.sync.client import connect


def start(binary, *extra):
    return subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--workers", "2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def compressed(binary) -> int:
    """permessage-deflate with websockets' default offer
    (`permessage-deflate; client_max_window_bits`)."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write("[compression]\nenabled = true\n")
        path = f.name
    proc = start(binary, "--config", path)
    try:
        m = re.search(r"listening on (\S+)", proc.stdout.readline())
        if not m:
            print("interop: the compression server did not start")
            return 1
        url = f"ws://{m.group(1)}/echo"
        with connect(url, max_size=2**21, open_timeout=10, close_timeout=10) as ws:
            agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert agreed.startswith("permessage-deflate"), agreed
            assert ws.protocol.extensions, "websockets did not accept the agreement"
            doc = json.dumps([{"symbol": "ACME", "price": 101.25 + i, "volume": i} for i in range(300)])
            ws.send(doc)
            assert ws.recv(timeout=10) == doc
            blob = os.urandom(1 << 20)
            ws.send(blob)
            assert ws.recv(timeout=20) == blob, "1 MiB incompressible echo differs"
            ws.send("small")
            assert ws.recv(timeout=10) == "small"
            ws.close(code=1000, reason="done")
            assert ws.close_code == 1000, ws.close_code
        print(f"interop: python websockets with permessage-deflate ok ({agreed})")
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.unlink(path)


def main() -> int:
    binary = sys.argv[1]
    if compressed(binary) != 0:
        return 1
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            print(f"interop: unexpected first line: {line!r}")
            return 1
        url = f"ws://{m.group(1)}/echo"
        with connect(url, max_size=2**21, open_timeout=10, close_timeout=10) as ws:
            ws.send("héllo from python")
            assert ws.recv(timeout=10) == "héllo from python"
            blob = os.urandom(1 << 20)
            ws.send(blob)
            got = ws.recv(timeout=20)
            assert got == blob, f"1 MiB binary echo differs ({len(got)} bytes back)"
            ws.close(code=1000, reason="done")
            assert ws.close_code == 1000, ws.close_code
        print(f"interop: python websockets echo ok against {url}")
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
