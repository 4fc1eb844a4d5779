#!/usr/bin/env python3
"""Opens N keep-alive connections to 127.0.0.1:PORT, one GET / on each, and holds them.

Usage: idle-conns.py PORT N   -- prints "ready N" once all are open and answered, then waits
for a line on stdin (or 120 s) and closes them. Reports connections the server closed.
"""
import select
import socket
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: br, gzip\r\n\r\n"
socks = []
start = time.time()
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    socks.append(s)
    # Drain answers as we go, so neither side's buffers hold the whole landing page.
    if len(socks) % 100 == 0:
        for t in socks[-100:]:
            t.recv(1 << 16)
for t in socks[(len(socks) // 100) * 100:]:
    t.recv(1 << 16)
print(f"opened {n} connections with one GET each in {time.time() - start:.1f} s", flush=True)
print(f"ready {n}", flush=True)
select.select([sys.stdin], [], [], 120)
# Any connection the server closed meanwhile is readable with b"" (or leftover body bytes).
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        while True:
            b = s.recv(1 << 16)
            if not b:
                closed += 1
                break
    except BlockingIOError:
        pass
    s.close()
print(f"connections closed by the server while idle: {closed}", flush=True)
