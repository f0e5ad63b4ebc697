#!/usr/bin/env python3
"""Mempool benchmark (`python3 bench/mempool.py LABEL=PATH…`): a litecoind -regtest mempool of
--txs transactions, then a block confirming --confirm of them; for each Sextant binary given, the
time to a consistent mempool after the block and the CPU a refresh costs.

The chain and mempool are built once into --datadir (kept, with the daemon's mempool.dat, so
later runs start at once): coinbases to P2WSH(OP_TRUE), fan-out transactions of 2,000 outputs
each, then one small transaction per output (1 input, 1 P2PKH output of a script of its own, no
signatures to check). Every binary is measured on the same mempool: after a binary's block the
block is invalidated, which puts its transactions back into the mempool, and the next binary's
block confirms the same transactions.

Per binary:
- start: from launch to the Electrum port answering (the index synced, the mempool read once);
- idle: Sextant's and litecoind's CPU over --idle seconds with the mempool poll at --poll-ms and
  nothing changing, per refresh;
- block: `generateblock` with --confirm mempool txids; from its return, the time until a client
  polling Electrum sees the last confirmed transaction confirmed and out of the mempool, with
  an unconfirmed one still in it (consistent), and Sextant's CPU until then and over the next
  --settle seconds (whatever refreshes the block causes);
- where the binary logs it (LOG_LEVEL sextant::mempool=debug), each refresh's duration.
"""
import argparse, hashlib, http.client, json, os, re, socket, struct, subprocess, sys, time, base64

OP_TRUE = bytes([0x51])
OP_TRUE_P2WSH = bytes([0x00, 0x20]) + hashlib.sha256(OP_TRUE).digest()
CLK = os.sysconf("SC_CLK_TCK")


def sha256d(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def varint(n):
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    return b"\xfe" + struct.pack("<I", n)


def tx_spending_op_true(prevouts, outputs):
    """prevouts: [(txid_hex, vout)], outputs: [(value, script)] -> (raw hex, txid hex)."""
    ins = b"".join(bytes.fromhex(t)[::-1] + struct.pack("<I", v) + b"\x00" + b"\xff" * 4
                   for t, v in prevouts)
    outs = b"".join(struct.pack("<q", v) + varint(len(s)) + s for v, s in outputs)
    body = varint(len(prevouts)) + ins + varint(len(outputs)) + outs
    version, locktime = struct.pack("<i", 2), b"\x00" * 4
    txid = sha256d(version + body + locktime)[::-1].hex()
    witness = b"".join(b"\x01\x01" + OP_TRUE for _ in prevouts)
    raw = version + b"\x00\x01" + body + witness + locktime
    return raw.hex(), txid


class Rpc:
    def __init__(self, port, user="bench", password="bench"):
        self.port = port
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.conn = None

    def _post(self, body):
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
                self.conn.request("POST", "/", body, {"Authorization": self.auth,
                                                      "Content-Type": "application/json"})
                return json.loads(self.conn.getresponse().read())
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.5)

    def call(self, method, *params):
        r = self._post(json.dumps({"jsonrpc": "1.0", "id": 0, "method": method,
                                   "params": list(params)}))
        if r.get("error"):
            raise RuntimeError(f"{method}: {r['error']}")
        return r["result"]

    def batch(self, method, param_lists):
        body = json.dumps([{"jsonrpc": "1.0", "id": i, "method": method, "params": p}
                           for i, p in enumerate(param_lists)])
        return self._post(body)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def start_daemon(datadir, port):
    os.makedirs(datadir, exist_ok=True)
    args = ["litecoind", "-regtest", f"-datadir={datadir}", "-txindex=1", "-server=1",
            "-listen=0", "-connect=0", "-dnsseed=0", "-listenonion=0", "-upnp=0", "-discover=0",
            "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", f"-rpcport={port}",
            f"-port={free_port()}", "-rpcuser=bench", "-rpcpassword=bench", "-rpcthreads=8",
            "-rpcworkqueue=512", "-printtoconsole=0", "-maxmempool=2000",
            "-minrelaytxfee=0.00001", "-mempoolexpiry=100000", "-persistmempool=1",
            "-fallbackfee=0.0001", "-disablewallet=1", "-rpcservertimeout=600"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rpc = Rpc(port)
    for _ in range(3000):
        try:
            rpc.call("getblockcount")
            return p, rpc
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("litecoind does not answer")


def mine(rpc, n):
    desc = rpc.call("getdescriptorinfo", f"raw({OP_TRUE_P2WSH.hex()})")["descriptor"]
    return rpc.call("generatetodescriptor", n, desc)


def build(rpc, txs):
    """Coinbases, fan-outs, then `txs` small transactions in the mempool."""
    fan = 2000
    fanouts = (txs + fan - 1) // fan
    each = 1_000_000  # 0.01 LTC per output
    mine(rpc, fanouts + 101)
    utxos = []
    for h in range(1, fanouts + 1):
        block = rpc.call("getblock", rpc.call("getblockhash", h), 2)
        cb = block["tx"][0]
        value = round(cb["vout"][0]["value"] * 1e8)
        assert value >= fan * each + 1_000_000, value
        outs = [(each, OP_TRUE_P2WSH)] * fan + [(value - fan * each - 1_000_000, OP_TRUE_P2WSH)]
        raw, txid = tx_spending_op_true([(cb["txid"], 0)], outs)
        rpc.call("sendrawtransaction", raw)
        utxos += [(txid, v) for v in range(fan)]
    while rpc.call("getmempoolinfo")["size"]:
        mine(rpc, 1)
    print(f"chain at {rpc.call('getblockcount')}: {len(utxos)} outputs to spend", file=sys.stderr)
    t = time.time()
    raws = []
    for i, op in enumerate(utxos[:txs]):
        script = b"\x76\xa9\x14" + hashlib.new("ripemd160", hashlib.sha256(
            f"mempool bench {i}".encode()).digest()).digest() + b"\x88\xac"
        raws.append(tx_spending_op_true([op], [(each - 1000, script)])[0])
    for i in range(0, len(raws), 1000):
        for r in rpc.batch("sendrawtransaction", [[x] for x in raws[i:i + 1000]]):
            if r.get("error"):
                raise RuntimeError(r["error"])
    print(f"{len(raws)} transactions sent in {time.time() - t:.0f} s", file=sys.stderr)


class Electrum:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("r")
        self.id = 0

    def call(self, method, *params):
        self.id += 1
        self.s.sendall((json.dumps({"jsonrpc": "2.0", "id": self.id, "method": method,
                                    "params": list(params)}) + "\n").encode())
        while True:
            v = json.loads(self.f.readline())
            if v.get("id") == self.id:
                if "error" in v:
                    raise RuntimeError(v["error"])
                return v["result"]


def electrum_sh(script):
    return hashlib.sha256(script).digest()[::-1].hex()


def script_of(rpc, txid):
    tx = rpc.call("getrawtransaction", txid, True)
    return bytes.fromhex(tx["vout"][0]["scriptPubKey"]["hex"])


def measure(binary, label, rpc, rpcport, work, a):
    port = free_port()
    db = os.path.join(work, f"db-{label}")
    subprocess.run(["rm", "-rf", db], check=True)
    env = dict(os.environ, COIN="Litecoin", NET="regtest",
               DAEMON_URL=f"http://bench:bench@127.0.0.1:{rpcport}/", DB_DIRECTORY=db,
               SERVICES=f"tcp://127.0.0.1:{port}", PEER_DISCOVERY="off", PEER_ANNOUNCE="",
               DAEMON_POLL_INTERVAL_MEMPOOL=str(a.poll_ms), COST_SOFT_LIMIT="0",
               COST_HARD_LIMIT="0", LOG_LEVEL="info,sextant::mempool=debug")
    log = open(os.path.join(work, f"{label}.log"), "w")
    t0 = time.time()
    p = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            if p.poll() is not None:
                raise RuntimeError(f"{label} exited: see {log.name}")
            time.sleep(0.05)
    out = {"label": label, "start s": round(time.time() - t0, 2),
           "mempool": rpc.call("getmempoolinfo")["size"]}
    time.sleep(3)
    d0, s0, w0 = cpu_seconds(rpc_pid[0]), cpu_seconds(p.pid), time.time()
    time.sleep(a.idle)
    d1, s1, w1 = cpu_seconds(rpc_pid[0]), cpu_seconds(p.pid), time.time()
    refreshes = (w1 - w0) * 1000 / a.poll_ms
    out["idle: Sextant CPU ms per refresh"] = round((s1 - s0) * 1000 / refreshes, 1)
    out["idle: litecoind CPU ms per refresh"] = round((d1 - d0) * 1000 / refreshes, 1)
    out["idle: Sextant CPU %"] = round((s1 - s0) * 100 / (w1 - w0), 1)

    ids = sorted(rpc.call("getrawmempool"))
    confirm, stay = ids[:a.confirm], ids[a.confirm]
    c = Electrum(port)
    c.call("server.version", "mempool-bench", "1.4")
    last_sh = electrum_sh(script_of(rpc, confirm[-1]))
    stay_sh = electrum_sh(script_of(rpc, stay))
    assert c.call("blockchain.scripthash.get_mempool", last_sh), "confirmed tx not in mempool"
    desc = rpc.call("getdescriptorinfo", f"raw({OP_TRUE_P2WSH.hex()})")["descriptor"]
    cpu0 = cpu_seconds(p.pid)
    block = rpc.call("generateblock", desc, confirm)["hash"]
    t_block = time.time()
    height = rpc.call("getblockcount")
    while True:
        hist = c.call("blockchain.scripthash.get_history", last_sh)
        if (hist and hist[-1]["height"] == height
                and not c.call("blockchain.scripthash.get_mempool", last_sh)
                and c.call("blockchain.scripthash.get_mempool", stay_sh)):
            break
        if time.time() - t_block > 60:
            raise RuntimeError(f"{label}: no consistent mempool 60 s after the block")
    out["block: ms to consistent"] = round((time.time() - t_block) * 1000, 1)
    out["block: Sextant CPU ms until then"] = round((cpu_seconds(p.pid) - cpu0) * 1000, 1)
    time.sleep(a.settle)
    idle_per_s = (s1 - s0) / (w1 - w0)
    spent = cpu_seconds(p.pid) - cpu0 - idle_per_s * (time.time() - t_block)
    out[f"block: Sextant CPU ms over {a.settle} s, idle polls deducted"] = round(spent * 1000, 1)
    p.terminate()
    p.wait()
    log.close()
    # Refresh durations the binary logs (this branch on): the first after the block.
    text = open(log.name).read()
    durations = [float(x) for x in re.findall(r"mempool refresh: ([0-9.]+) ms", text)]
    if durations:
        out["refresh ms logged: max over the run"] = max(durations)
        after = [l for l in text.splitlines() if "mempool refresh:" in l]
        out["refreshes logged"] = len(after)
    rpc.call("invalidateblock", block)
    while rpc.call("getmempoolinfo")["size"] < out["mempool"]:
        time.sleep(0.5)
    return out


rpc_pid = [None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datadir", default=os.path.expanduser("~/.cache/live-mempool/litecoind"))
    ap.add_argument("--work", default="/tmp/sextant-mempool")
    ap.add_argument("--txs", type=int, default=100_000)
    ap.add_argument("--confirm", type=int, default=3_000)
    ap.add_argument("--poll-ms", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=15)
    ap.add_argument("--settle", type=float, default=5)
    ap.add_argument("binaries", nargs="*", help="LABEL=PATH (none: only build the mempool)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    port = free_port()
    fresh = not os.path.exists(os.path.join(a.datadir, "regtest"))
    proc, rpc = start_daemon(a.datadir, port)
    rpc_pid[0] = proc.pid
    try:
        if fresh:
            build(rpc, a.txs)
        while not rpc.call("getmempoolinfo")["loaded"]:
            time.sleep(0.5)
        size = rpc.call("getmempoolinfo")["size"]
        print(f"mempool: {size} transactions", file=sys.stderr)
        for spec in a.binaries:
            label, path = spec.split("=", 1)
            print(f"== {label} (load {open('/proc/loadavg').read().split()[:3]})", file=sys.stderr)
            print(json.dumps(measure(path, label, rpc, port, a.work, a)), flush=True)
    finally:
        try:
            rpc.call("stop")
            proc.wait(600)
        except Exception:
            proc.kill()


if __name__ == "__main__":
    main()
