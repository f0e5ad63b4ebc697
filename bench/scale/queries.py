#!/usr/bin/env python3
"""Queries on a freshly synced big index: how fast a server answers scripts of every size.

    queries.py --name sextant --port TCP --chain DIR

For each of the chain's probe scripts (chain.json: the reused scripts closest to 10, 1k, 100k
and 1M history entries, with their exact history and UTXO counts at the tip), calls
`blockchain.scripthash.get_history`, `listunspent` and `get_balance` one after another on one
connection, each until 200 calls or 10 s have passed (at least 5 calls), and prints one JSON
line: per probe and method the calls made, p50 and p99 in ms (until the reply's last byte;
parsing it is not counted), the first call's ms apart (it reads what no cache holds yet after
the sync: with 200 calls the p99 is the second slowest), and the entries answered or the
error. Runs before the fresh block is revealed, so the tip is the chain's and an answer must
hold exactly the probe's counts: a wrong count ends the script with an error. A history too
large for the server's `MAX_SEND` is an answer too ("history too large"), timed the same way.
"""
import argparse
import json
import socket
import sys
import time


class Client:
    def __init__(self, port):
        deadline = time.time() + 60
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.reader = self.sock.makefile("rb")
        self.next_id = 0

    def call(self, method, params):
        """The reply and the ms until its last byte was read; parsing it (a 10 MB history takes
        Python ~200 ms, several times the server's time) is not counted."""
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        started = time.perf_counter()
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            line = self.reader.readline()
            ms = (time.perf_counter() - started) * 1000
            reply = json.loads(line)
            if reply.get("id") == self.next_id:
                return reply, ms


def percentile(sorted_ms, p):
    return round(sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))], 2)


def measure(client, method, scripthash, check):
    """Calls until 200 calls or 10 s; returns the timings and what the last answer held."""
    times = []
    started = time.perf_counter()
    while len(times) < 200 and (len(times) < 5 or time.perf_counter() - started < 10):
        reply, ms = client.call(method, [scripthash])
        times.append(ms)
    first = round(times[0], 2)
    times.sort()
    out = {"calls": len(times), "p50_ms": percentile(times, 0.5), "p99_ms": percentile(times, 0.99),
           "first_ms": first}
    if "error" in reply and reply["error"]:
        out["error"] = reply["error"].get("message", str(reply["error"]))
    else:
        out.update(check(reply["result"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--chain", required=True)
    a = ap.parse_args()
    with open(f"{a.chain}/chain.json") as f:
        probes = json.load(f)["probes"]
    client = Client(a.port)
    client.call("server.version", ["scale-queries", "1.4"])
    wrong = []
    results = []
    for probe in probes:
        sh = probe["scripthash"]

        def history(r, probe=probe):
            if len(r) != probe["history"]:
                wrong.append(f"{probe['target']}: {len(r)} history entries, not {probe['history']}")
            return {"entries": len(r)}

        def unspent(r, probe=probe):
            if len(r) != probe["utxos"]:
                wrong.append(f"{probe['target']}: {len(r)} UTXOs, not {probe['utxos']}")
            return {"entries": len(r)}

        def balance(r):
            return {"confirmed": r["confirmed"]}

        row = {"target": probe["target"], "history": probe["history"], "utxos": probe["utxos"]}
        for method, check in (("get_history", history), ("listunspent", unspent),
                              ("get_balance", balance)):
            row[method] = measure(client, f"blockchain.scripthash.{method}", sh, check)
        results.append(row)
    print(json.dumps({"server": a.name, "queries": True, "probes": results}), flush=True)
    if wrong:
        sys.exit(f"{a.name} answered wrong counts: {'; '.join(wrong)}")


if __name__ == "__main__":
    main()
