#!/usr/bin/env python3
"""A fresh block after the sync: how long until a synced server has notified its subscribers.

    fresh.py --name sextant --port TCP --daemon http://user:pass@127.0.0.1:P/ --chain DIR

Subscribes one session to every script the chain's first held-back block pays (up to 1,000,
from chain.json; those with histories too large to serve are refused and left out), asks the stand-in to reveal that block (`generatetoaddress 1`), and prints one
JSON line: the block's transactions, subscriptions, notifications received, and milliseconds
from the reveal to the first and to the last notification. The server's own block polling
(`DAEMON_POLL_INTERVAL_BLOCKS`) is part of the time, as it is for a real daemon.
"""
import argparse
import base64
import hashlib
import json
import socket
import sys
import time
import urllib.parse
import urllib.request


def scripthash(script_hex):
    return hashlib.sha256(bytes.fromhex(script_hex)).digest()[::-1].hex()


def reveal(url):
    u = urllib.parse.urlsplit(url)
    req = urllib.request.Request(
        f"http://{u.hostname}:{u.port}/",
        data=json.dumps({"method": "generatetoaddress", "params": [1, "x"], "id": 1}).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(
            f"{u.username}:{u.password}".encode()).decode()},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["result"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--chain", required=True)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    with open(f"{a.chain}/chain.json") as f:
        fresh = json.load(f)["fresh"][0]
    hashes = sorted({scripthash(s) for s in fresh["paid_scripts"]})

    # ElectrumX opens its port a moment after logging that it is synced.
    deadline = time.time() + 60
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", a.port))
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    reqs = [{"jsonrpc": "2.0", "id": 0, "method": "server.version", "params": ["fresh", "1.4"]}]
    reqs += [{"jsonrpc": "2.0", "id": i + 1, "method": "blockchain.scripthash.subscribe",
              "params": [h]} for i, h in enumerate(hashes)]
    s.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
    # Scripts whose history is past MAX_SEND are refused ("history too large"), as wallets
    # would be: they are left out.
    answered, refused = 0, set()
    while answered < len(reqs):
        msg = json.loads(f.readline())
        if "id" in msg:
            if "error" in msg:
                if msg["id"] == 0:
                    sys.exit(f"fresh.py: {msg}")
                refused.add(hashes[msg["id"] - 1])
            answered += 1
    watched = set(hashes) - refused

    t0 = time.time()
    reveal(a.daemon)
    notified = set()
    first = last = None
    s.settimeout(a.timeout)
    try:
        while len(notified) < len(watched):
            msg = json.loads(f.readline())
            if msg.get("method") == "blockchain.scripthash.subscribe":
                now = time.time()
                first = first or now
                last = now
                notified.add(msg["params"][0])
    except (socket.timeout, ValueError):
        pass
    ms = lambda t: None if t is None else round((t - t0) * 1000, 1)
    print(json.dumps({
        "server": a.name, "fresh_block": True, "height": fresh["height"], "txs": fresh["txs"],
        "subscribed": len(watched), "refused": len(refused), "notified": len(notified),
        "first_note_ms": ms(first), "last_note_ms": ms(last),
    }), flush=True)


if __name__ == "__main__":
    main()
