#!/usr/bin/env python3
"""Sends exactly N order posts (the body of bench/post-order.lua, a unique name each) over C
keep-alive connections to 127.0.0.1:PORT and checks every answer is a 303.

Used by bench/instructions.sh, where the server runs under callgrind: a fixed number of posts
makes "instructions per post" a count rather than a rate.

With a fourth argument `get`, sends N `GET /` (brotli accepted) instead and expects 200s.

Usage: posts.py PORT N [C] [get]
"""
import socket
import sys
import threading

port, total = int(sys.argv[1]), int(sys.argv[2])
conns = int(sys.argv[3]) if len(sys.argv) > 3 else 16
gets = len(sys.argv) > 4 and sys.argv[4] == "get"
origin = f"http://127.0.0.1:{port}"
failures = []


def request(tag):
    if gets:
        return f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept-Encoding: br, gzip\r\n\r\n".encode()
    body = (
        f"name=Bench+Buyer+{tag}&email=buyer%40example.org&street=Hauptstr.+1&postcode=10115"
        "&city=Berlin&country=DE&sku=AURORA-EB&quantity=1"
    ).encode()
    head = (
        f"POST /submit/order HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def read_response(sock, pending):
    """Reads one response (head plus Content-Length bytes); returns its status and the rest."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        pending += chunk
    head, rest = pending.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, rest[length:]


def client(index, count):
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        pending = b""
        for i in range(count):
            sock.sendall(request(f"{index}-{i}"))
            status, pending = read_response(sock, pending)
            if status != (200 if gets else 303):
                failures.append(status)
        sock.close()
    except OSError as e:
        failures.append(str(e))


threads = []
for c in range(conns):
    share = total // conns + (1 if c < total % conns else 0)
    t = threading.Thread(target=client, args=(c, share))
    t.start()
    threads.append(t)
for t in threads:
    t.join()
if failures:
    print(f"posts.py: {len(failures)} of {total} posts failed: {failures[:5]}", file=sys.stderr)
    sys.exit(1)
print(f"posts.py: {total} {'GETs, all 200' if gets else 'posts, all 303'}")
