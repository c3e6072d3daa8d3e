"""Interop with a peer that is not Rust: Python's `websockets` package.

1. Its client against the server: starts the release server binary on an
   ephemeral port, then does an echo round trip of a text message and a
   1 MiB binary message, and a clean close; then, against a server with
   `[compression] enabled`, the same with permessage-deflate negotiated by
   websockets' own offer.
2. Its server against our client: serves echo with `websockets` (which
   checks the client's masking, handshake and close) and runs
   `wsedge-client` against it: stdin lines come back on stdout, binary
   mode, and the close handshake ends with exit status 0.

Usage: python tests/interop_python.py PATH_TO_WSEDGE [PATH_TO_WSEDGE_CLIENT]
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve


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


def client_against_python(client_binary: str) -> int:
    closes = []

    def echo(ws):
        try:
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass  # a close code other than 1000/1001 ends the loop this way
        closes.append(ws.close_code)

    with serve(echo, "127.0.0.1", 0, max_size=2**21) as server:
        port = server.socket.getsockname()[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"ws://127.0.0.1:{port}/"
        lines = "héllo from wsedge-client\n" + "x" * 70000 + "\nlast\n"
        run = subprocess.run(
            [client_binary, "--max-messages", "3", url],
            input=lines.encode(), capture_output=True, timeout=20,
        )
        if run.returncode != 0 or run.stdout.decode() != lines:
            print(f"interop: wsedge-client echo failed (exit {run.returncode}): {run.stderr!r}")
            return 1
        run = subprocess.run(
            [client_binary, "--binary", "--json", "--once", "--close-code", "4000", url],
            input=b"bytes\n", capture_output=True, timeout=20,
        )
        if run.returncode != 0 or b'"binary":"Ynl0ZXM="' not in run.stdout:
            print(f"interop: wsedge-client binary echo failed: {run.stdout!r} {run.stderr!r}")
            return 1
        server.shutdown()
        thread.join(timeout=10)
    if closes != [1000, 4000]:
        print(f"interop: python saw close codes {closes}, expected [1000, 4000]")
        return 1
    print(f"interop: wsedge-client echo ok against python websockets at {url}")
    return 0


if __name__ == "__main__":
    status = main()
    if status == 0 and len(sys.argv) > 2:
        status = client_against_python(sys.argv[2])
    sys.exit(status)
