#!/usr/bin/env python3
"""Follows one server's initial sync of a scale chain and prints JSON lines.

    monitor.py --name sextant --pid PID --rpc-port P --db DIR --chain DIR --log LOG \
               --done "caught up with the daemon" [--segment 1000000] [--interval 0.25]

Every `--interval` seconds it asks the server's admin RPC `getinfo` for its `db height`
(Sextant's is its indexed tip during the sync; ElectrumX answers -1 until synced), or else
reads the last height `--log-height` (a regular expression) matched in the server's log
(ElectrumX: `our height: N` and `flush took … Height N`), turns heights into transaction counts
with the chain's index.bin, and reads the process's RSS and CPU time from /proc. Each time the
count passes a multiple of `--segment` it prints a segment line (the crossing time interpolated
between samples):

    {"server","segment","height","txs","seconds","tx_per_s","rss_mb","db_bytes","cpu_s"}

When the log shows `--done` it prints the summary line (`"summary": true`) and exits:
txs, seconds, tx_per_s, slowest_segment_ratio (slowest full segment over the fastest),
slowest_stretch_ratio (the same over 10-segment stretches; null below two of them),
peak_rss_mb (the kernel's high-water mark, VmHWM), db_bytes, db_bytes_per_tx, cpu_s. DB bytes
are measured again by the caller after the server has stopped (final flush included).
"""
import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time

ENTRY = 64


def cumulative_txs(chain):
    """Transactions in blocks 0..=h, by h."""
    out = []
    with open(os.path.join(chain, "index.bin"), "rb") as f:
        raw = f.read()
    for i in range(0, len(raw), ENTRY):
        first_tx, n_tx = struct.unpack_from("<QI", raw, i + 48)
        out.append(first_tx + n_tx)
    return out


def db_height(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":[]}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf)["result"]["db height"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def proc_stats(pid):
    """(rss_mb, hwm_mb, cpu_s) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    kb = {}
    for line in status.splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            kb[k] = int(v.split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / tick
    return kb.get("VmRSS", 0) / 1024, kb.get("VmHWM", 0) / 1024, cpu


def du(path):
    try:
        out = subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout
        return int(out.split()[0])
    except (OSError, ValueError, IndexError):
        return 0


class LogHeight:
    """The last height a regular expression matched in a growing log."""

    def __init__(self, path, pattern):
        self.path, self.re, self.offset, self.height = path, re.compile(pattern), 0, None

    def poll(self):
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self.offset)
                text = f.read()
        except OSError:
            return self.height
        # Only whole lines: a line being written is read again next time.
        end = text.rfind("\n") + 1
        self.offset += len(text[:end].encode())
        for m in self.re.finditer(text[:end]):
            digits = next(g for g in m.groups() if g)
            self.height = int(digits.replace(",", ""))
        return self.height


def log_has(path, text):
    try:
        with open(path, errors="replace") as f:
            return text in f.read()
    except OSError:
        return False


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--rpc-port", type=int, default=0, help="admin RPC (0: none, no segments)")
    ap.add_argument("--db", required=True)
    ap.add_argument("--chain", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--done", help="log line that means synced")
    ap.add_argument("--done-port", type=int, default=0, help="or: a port that opens when synced")
    ap.add_argument("--log-height", help="regex whose first matching group is a height in the log")
    ap.add_argument("--segment", type=int, default=1_000_000)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--start", type=float, default=None, help="process start (epoch seconds)")
    a = ap.parse_args()

    cum = cumulative_txs(a.chain)
    from_log = LogHeight(a.log, a.log_height) if a.log_height else None
    t0 = a.start or time.time()
    prev_t, prev_txs = t0, 0
    next_boundary = a.segment
    last_cross = t0
    segments = []
    hwm = 0.0
    cpu = 0.0
    while True:
        now = time.time()
        h = db_height(a.rpc_port) if a.rpc_port else None
        if from_log and (h is None or h < 0):
            h = from_log.poll()
        st = proc_stats(a.pid)
        if st is None:
            print(json.dumps({"server": a.name, "error": "exited before the sync finished"}))
            sys.exit(1)
        rss, hwm, cpu = st[0], max(hwm, st[1]), st[2]
        txs = cum[min(h, len(cum) - 1)] if isinstance(h, int) and h >= 0 else 0
        while txs >= next_boundary:
            # Linear interpolation between the last two samples.
            frac = (next_boundary - prev_txs) / max(txs - prev_txs, 1)
            t = prev_t + frac * (now - prev_t)
            secs = t - last_cross
            seg = {
                "server": a.name, "segment": len(segments) + 1, "height": h, "txs": next_boundary,
                "seconds": round(secs, 3), "tx_per_s": round(a.segment / max(secs, 1e-9)),
                "rss_mb": round(rss), "db_bytes": du(a.db), "cpu_s": round(cpu, 1),
            }
            segments.append(seg)
            print(json.dumps(seg), flush=True)
            last_cross = t
            next_boundary += a.segment
        prev_t, prev_txs = now, txs
        if (a.done and log_has(a.log, a.done)) or (a.done_port and port_open(a.done_port)):
            break
        time.sleep(a.interval)
    secs = time.time() - t0
    with open(os.path.join(a.chain, "chain.json")) as f:
        total = cum[json.load(f)["height"]]
    times = [s["seconds"] for s in segments]
    ratio = round(max(times) / min(times), 2) if len(times) >= 2 and min(times) > 0 else None
    # The target is on 10M-transaction stretches: ten 1M segments each.
    stretches = [sum(times[i:i + 10]) for i in range(0, len(times) - 9, 10)]
    stretch_ratio = round(max(stretches) / min(stretches), 2) if len(stretches) >= 2 else None
    db = du(a.db)
    print(json.dumps({
        "server": a.name, "summary": True, "txs": total, "seconds": round(secs, 2),
        "tx_per_s": round(total / secs), "slowest_segment_ratio": ratio,
        "slowest_stretch_ratio": stretch_ratio,
        "peak_rss_mb": round(hwm), "db_bytes": db, "db_bytes_per_tx": round(db / total, 1),
        "cpu_s": round(cpu, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
