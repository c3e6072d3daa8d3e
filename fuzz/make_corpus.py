#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/<target>/.

Run from anywhere: python3 fuzz/make_corpus.py. Deterministic; rerunning
rewrites the same files. See FUZZING.md for each target's input format:

- handshake:  1 control byte (bit 7: small limits; low bits: read sizes), then
  the request bytes.
- connection: 1 schedule byte (bits 0-2 read size, 3-4 kernel budget, 5-6
  timer odds, 7 drop policy), 1 seed byte (bit 0: idle timeout), then what the
  client sends after the upgrade request.
- client: 1 control byte (bit 7: a valid 101 first; bits 0-2 read size, 3-4
  client sends or closes, 5 EOF at the end), then what the server sends.
- tls: 1 schedule byte (bits 0-2 piece of the client's TLS stream, 3-4 kernel
  budget, 5 TLS 1.2, 6-7 corruption length), 1 seed byte (bits 0 idle, 1
  close_notify, 2 FIN, 3 drop policy), 2 bytes corruption offset, 1 byte XOR
  mask, then the same client bytes as the connection seeds.
- frames: `arbitrary`-encoded, so its seeds are grown by the fuzzer itself
  (`make fuzz` merges the interesting ones back, see FUZZING.md).
"""

import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

# ---------------------------------------------------------------- handshake

CHROME = (
    "GET /echo?room=lobby HTTP/1.1\r\n"
    "Host: edge.example.com\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36\r\n"
    "Upgrade: websocket\r\n"
    "Origin: https://app.example.com\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Cookie: session=abc123; theme=dark\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "\r\n"
)

FIREFOX = (
    "GET /echo HTTP/1.1\r\n"
    "Host: edge.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
    "Accept: */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: https://app.example.com\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC==\r\n"
    "DNT: 1\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-Fetch-Dest: empty\r\n"
    "Sec-Fetch-Mode: websocket\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "Upgrade: websocket\r\n"
    "\r\n"
)

# RFC 6455 section 1.2, the client's opening handshake.
RFC_CLIENT = (
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n"
)

BASE = [
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
]


def request(method="GET", path="/echo", version="HTTP/1.1", drop=None, add=()):
    lines = [h for h in BASE if drop is None or not h.startswith(drop)]
    lines += list(add)
    return f"{method} {path} {version}\r\n" + "".join(l + "\r\n" for l in lines) + "\r\n"


# Masked "Hello" (RFC 6455 section 5.7).
MASKED_HELLO = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])

HANDSHAKE = {
    # ctl 0x07: whole reads; 0x00: one byte at a time; 0x03: 1-7 bytes.
    "chrome": (0x07, CHROME),
    "chrome_bytewise": (0x00, CHROME),
    "firefox": (0x03, FIREFOX),
    "rfc6455_client": (0x05, RFC_CLIENT),
    "rfc6455_subprotocols_small_limits": (0x87, RFC_CLIENT),
    "pipelined_frame": (0x06, request().encode() + MASKED_HELLO),
    "refuse_405_post": (0x07, request(method="POST")),
    "refuse_400_http10": (0x07, request(version="HTTP/1.0")),
    "refuse_400_no_host": (0x07, request(drop="Host")),
    "refuse_400_duplicate_host": (0x07, request(add=["Host: evil.example.com"])),
    "refuse_400_no_upgrade": (0x07, request(drop="Upgrade", add=["Upgrade: h2c"])),
    "refuse_400_no_connection": (0x07, request(drop="Connection", add=["Connection: keep-alive"])),
    "refuse_400_bad_key": (0x07, request(drop="Sec-WebSocket-Key", add=["Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0O"])),
    "refuse_400_two_keys": (0x07, request(add=["Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC=="])),
    "refuse_400_malformed": (0x07, "GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
    "refuse_400_tls_client_hello": (0x07, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    "refuse_426_version_8": (0x07, request(drop="Sec-WebSocket-Version", add=["Sec-WebSocket-Version: 8"])),
    "refuse_426_no_version": (0x07, request(drop="Sec-WebSocket-Version")),
    "refuse_431_oversized_head": (0x06, request(add=["X-Filler: " + "a" * 9000])),
    "refuse_431_too_many_headers": (0x07, request(add=[f"X-H{i}: v" for i in range(60)])),
    "refuse_431_small_limits": (0x87, request(add=["X-Filler: " + "b" * 300])),
    # 404 is the connection's routing decision; the parser accepts it.
    "path_404": (0x07, request(path="/nope")),
    "incomplete": (0x02, "GET /echo HTTP/1.1\r\nHost: x\r\n"),
    "lf_only": (0x07, request().replace("\r\n", "\n")),
}

# ------------------------------------------------------------- connection


def frame(fin, opcode, payload, mask=b"\x37\xfa\x21\x3d", rsv=0):
    """A client frame; mask=None sends it unmasked."""
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    m = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close(code=None, reason=b""):
    return frame(True, 8, b"" if code is None else struct.pack(">H", code) + reason)


# Schedules (byte 0): read size | kernel budget << 3 | timer odds << 5 | drop << 7.
WHOLE = 0x07  # whole reads, kernel takes all, no timers
BYTEWISE = 0x00  # one byte per read
SMALL = 0x02  # reads of 1-16 bytes
TIGHT = 0x03 | 1 << 3  # reads of 1-64, kernel takes 0-64 bytes per write
STUCK = 0x05 | 3 << 3  # reads of 1-4096, kernel takes nothing (1 byte when the client reads)
TIMERS = 0x04 | 2 << 5  # timers fire every other event
STUCK_DROP = STUCK | 0x80

CONNECTION = {
    # RFC 6455 section 5.7 examples (the unmasked ones as a client would
    # wrongly send them: refused with 1002).
    "rfc_masked_hello": (WHOLE, MASKED_HELLO),
    "rfc_masked_hello_bytewise": (BYTEWISE, MASKED_HELLO),
    "rfc_unmasked_hello": (WHOLE, bytes([0x81, 0x05]) + b"Hello"),
    "rfc_fragmented_unmasked": (WHOLE, bytes([0x01, 0x03]) + b"Hel" + bytes([0x80, 0x02]) + b"lo"),
    "rfc_fragmented_masked": (SMALL, frame(False, 1, b"Hel") + frame(True, 0, b"lo")),
    "rfc_ping_unmasked": (WHOLE, bytes([0x89, 0x05]) + b"Hello"),
    "rfc_masked_pong": (WHOLE, bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])),
    "rfc_binary_256": (SMALL, frame(True, 2, bytes(range(256)))),
    "rfc_binary_64k_too_big": (WHOLE, frame(True, 2, b"\0" * 65536)[:14]),
    "fragments_with_pings": (
        SMALL,
        frame(False, 1, "héllo ".encode())
        + frame(True, 9, b"ping-1")
        + frame(False, 0, "wörld".encode()[:3])
        + frame(True, 9, b"")
        + frame(True, 0, "wörld".encode()[3:])
        + frame(True, 10, b"unsolicited pong"),
    ),
    "echo_then_close_1000": (TIGHT, frame(True, 2, b"\x01" * 300) + close(1000, b"bye")),
    "close_empty": (WHOLE, close()),
    "close_4000": (WHOLE, close(4000, b"app")),
    "close_1005_forbidden": (WHOLE, close(1005)),
    "close_999": (WHOLE, close(999)),
    "close_one_byte": (WHOLE, frame(True, 8, b"\x03")),
    "close_bad_utf8_reason": (WHOLE, close(1000, b"\xff\xfe")),
    "text_bad_utf8": (WHOLE, frame(True, 1, b"ok \xc3\x28")),
    "text_utf8_split_across_fragments": (SMALL, frame(False, 1, b"\xe2\x82") + frame(True, 0, b"\xac")),
    "reserved_opcode": (WHOLE, frame(True, 3, b"x")),
    "rsv1_without_extension": (WHOLE, frame(True, 1, b"compressed?", rsv=4)),
    "continuation_first": (WHOLE, frame(True, 0, b"x")),
    "fragmented_ping": (WHOLE, frame(False, 9, b"x")),
    "ping_126_bytes": (WHOLE, frame(True, 9, b"p" * 126)),
    "message_over_limit": (SMALL, frame(False, 2, b"a" * 4000) + frame(False, 0, b"b" * 4000) + frame(True, 0, b"c" * 400)),
    "frame_over_limit": (WHOLE, frame(True, 2, b"z" * 5000)),
    "slow_consumer_close": (STUCK, b"".join(frame(True, 2, bytes([i]) * 2000) for i in range(12))),
    "slow_consumer_drop": (STUCK_DROP, b"".join(frame(True, 2, bytes([i]) * 2000) for i in range(12))),
    "half_written_then_overflow": (TIGHT, frame(True, 1, b"a" * 100) + frame(True, 2, b"\0" * 4090) * 5),
    "pings_and_timers": (TIMERS, b"".join(frame(True, 9, bytes([i])) for i in range(20))),
    "idle_timeout": (TIMERS | 0x60, frame(True, 1, b"x")),
}

# ------------------------------------------------------------------- client

OK_101 = 0x80  # the target puts a valid 101 in front of the rest
CLIENT = {
    "frames_text_ping_close": (OK_101 | 3, b"\x81\x02hi\x89\x01p\x88\x02\x03\xe8"),
    "frames_fragmented": (OK_101 | 1 | 0x08, b"\x01\x03abc\x89\x00\x80\x02de"),
    "frames_close_4001": (OK_101 | 2 | 0x20, b"\x88\x0f\x0f\xa1token expired"),
    "refusal_401": (5, b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 14\r\n"
                       b"WWW-Authenticate: Bearer realm=\"wsedge\"\r\n\r\nbad credential\n"),
    "bad_accept": (6, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"),
    "masked_from_server": (OK_101 | 4, b"\x81\x82\x01\x02\x03\x04ab"),
}


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for name, (ctl, req) in HANDSHAKE.items():
        body = req.encode() if isinstance(req, str) else req
        write("handshake", name, bytes([ctl]) + body)
    for i, (name, (sched, data)) in enumerate(CONNECTION.items()):
        # Seed byte: bit 0 turns the idle timeout on, the rest is the index.
        idle = 1 if "idle" in name or "timers" in name else 0
        write("connection", name, bytes([sched, (i << 1 | idle) & 0xFF]) + data)
    for name, (ctl, data) in CLIENT.items():
        write("client", name, bytes([ctl]) + data)
    # tls: the connection seeds' client bytes over TLS, clean (1.3 and 1.2,
    # whole or in small pieces, ending with close_notify and FIN), and with
    # a byte flipped in the handshake (offset 6: the ClientHello's length;
    # 100: inside the hello) and after it (2000: application records).
    for i, (name, (sched, data)) in enumerate(CONNECTION.items()):
        pieces = sched & 0x1F  # read size and kernel budget as the connection seed
        write("tls", name, bytes([pieces, 0x06 if i % 2 else 0, 0, 0, 0]) + data)
        if i % 3 == 0:
            write("tls", name + "_tls12", bytes([pieces | 0x20, 0, 0, 0, 0]) + data)
    whole = CONNECTION["ping_126_bytes"][1]
    for at in (6, 100, 2000):
        for tls12 in (0, 0x20):
            write("tls", "corrupt_%d%s" % (at, "_tls12" if tls12 else ""),
                  bytes([0x47 | tls12, 0]) + struct.pack(">H", at) + bytes([0x80]) + whole)


if __name__ == "__main__":
    main()
