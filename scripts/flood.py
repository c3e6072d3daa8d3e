# Flood (BENCHMARKS.md, "Memory after a flood"): 300 subscribers of one room,
# 4 publishers of 60 KB messages for SECS seconds, against a wsedge on
# 127.0.0.1:PORT whose process id is PID; prints the server's RSS (KiB) at
# baseline, at its peak, and 5 s and 17 s after every client left.
# Usage: python3 scripts/flood.py PORT PID SECS   (loopback only)
import os, socket, sys, time, selectors, base64, threading
port, pid, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
def frame(payload, op=1):
    m = b"\x01\x02\x03\x04"; n = len(payload)
    h = bytes([0x80|op]) + (bytes([0x80|n]) if n < 126 else (bytes([0x80|126]) + n.to_bytes(2,'big') if n < 65536 else bytes([0x80|127]) + n.to_bytes(8,'big')))
    return h + m + bytes(b ^ m[i % 4] for i, b in enumerate(payload))
def upgrade():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(4096)
    return s
base = rss()
subs = [upgrade() for _ in range(300)]
for s in subs: s.sendall(frame(b'{"type":"subscribe","room":"flood"}'))
time.sleep(0.5)
stop = False
def reader():
    sel = selectors.DefaultSelector()
    for s in subs: s.setblocking(False); sel.register(s, selectors.EVENT_READ)
    while not stop:
        for k, _ in sel.select(0.05):
            try: k.fileobj.recv(1 << 20)
            except (BlockingIOError, ConnectionError): pass
t = threading.Thread(target=reader); t.start()
msg = frame(('{"type":"publish","room":"flood","data":"' + "x" * 60000 + '"}').encode())
pubs = [upgrade() for _ in range(4)]
def pub(s):
    s.settimeout(0.2); end = time.time() + secs
    while time.time() < end:
        try: s.sendall(msg)
        except socket.timeout: pass
        except OSError: return
pts = [threading.Thread(target=pub, args=(s,)) for s in pubs]
for p in pts: p.start()
peak = 0; end = time.time() + secs
while time.time() < end:
    peak = max(peak, rss()); time.sleep(0.2)
for p in pts: p.join()
stop = True; t.join()
for s in subs + pubs: s.close()
time.sleep(5); after5 = rss()
time.sleep(12); after17 = rss()
print(f"rss_kib base={base} peak={peak} after5s={after5} after17s={after17}")
