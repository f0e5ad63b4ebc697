#!/usr/bin/env python3
"""Soak benchmark (`bench/soak.sh`): Sextant over TLS under realistic wallets for SOAK_MINUTES while
the chain moves, reorganises and restarts, with abusive clients beside the honest ones; at the end
every wallet is compared with an oracle computed from the daemon.

Stdlib only (asyncio + ssl). What it does, in order:

1. Starts `litecoind -regtest -txindex=1` (no wallet) on free loopback ports in a fresh datadir,
   mines 101+ blocks to P2WSH(OP_TRUE) and splits coinbases into a pool of confirmed coins that
   need no signature (the same trick as bench/mempool.py, whose helpers it imports).
2. Makes SESSIONS wallets of 10-20 addresses each (P2WSH of `<id> OP_DROP OP_TRUE`, spendable with
   the witness script alone, and receive-only P2PKH / P2WPKH / P2SH scripts) and pays them for a
   few blocks, so the wallets start with a history.
3. Starts Sextant (SEXTANT_BIN) with a self-signed certificate (openssl), `ssl://` and `tcp://`
   on loopback, the default cost limits, LOG_LEVEL=info.
4. For SOAK_MINUTES: SESSIONS honest TLS sessions (each from its own 127.10.x.y address, i.e. its
   own /24 cost group, as wallets on the internet are) subscribe to headers and to their
   scripthashes, fetch history, transactions (checking their txid), merkle branches (checked
   against the header they fetch), balance and UTXOs, follow notifications, and now and then ask
   again; they reconnect after a disconnect. Meanwhile the controller mines a block every
   SOAK_BLOCK_SECONDS with payments between blocks (to wallet addresses, wallet-to-wallet spends,
   chains of unconfirmed spends), makes a 1-6 block reorg every few minutes
   (invalidateblock, some of the undone transactions double-spent to other wallets or to nobody,
   the new chain either re-confirming the rest or leaving it in the mempool), restarts the daemon
   once (stop, 10 s down, start on the same datadir and ports) and Sextant once (kill -9 by
   default, SOAK_SEXTANT_SIGNAL=TERM for a clean stop), and keeps ABUSERS abusive sessions coming
   and going (from 127.200.x.y): request floods, batches near MAX_RECV, lines over MAX_RECV,
   slowloris partial lines, idle connections (TLS or not even a handshake), garbage, subscription
   storms, clients that never read.
5. Settles (no new transactions, Sextant at the daemon's tip, no notification for 5 s), then
   builds the oracle from the daemon (every best-chain block by `getblock <hash> 2`, plus
   `getrawmempool true` and the mempool transactions) and checks: each session's last notified
   status of each of its scripthashes; a fresh session's get_history (with mempool heights and
   fees), get_balance and listunspent of every wallet scripthash; transaction.get of every
   wallet transaction and of every transaction the controller sent that the daemon no longer
   knows (both must agree with the daemon); get_merkle of every confirmed wallet transaction
   against the daemon's merkle root; the headers.
6. Reports Sextant's RSS (VmRSS every SOAK_SAMPLE_SECONDS): mean and least-squares slope over the
   last 20 minutes (or the part of the run after the Sextant restart, if shorter); its open
   file descriptors by kind before the sessions and after they all closed; every WARN/ERROR line
   of its log classified as expected (reorg, daemon down, abusive client) or not.

Prints a summary table (and keeps summary.json and the logs in the work directory); exits 1 if
anything was lost or unexpected (mismatches, unexpected log lines, honest requests failing outside
a planned outage, lingering client sockets or descriptors, an RSS slope over SOAK_RSS_SLOPE_MAX
MB/min, Sextant dying unplanned).
"""
import asyncio
import base64
import hashlib
import json
import os
import random
import re
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mempool import OP_TRUE, OP_TRUE_P2WSH, Rpc, electrum_sh, free_port, sha256d, varint  # noqa: E402


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_float(name, default):
    return float(os.environ.get(name, default))


MINUTES = env_float("SOAK_MINUTES", 30)
SESSIONS = env_int("SOAK_SESSIONS", 500)
ABUSERS = env_int("SOAK_ABUSERS", 50)
BLOCK_SECONDS = env_float("SOAK_BLOCK_SECONDS", 10)
TX_PER_BLOCK = env_float("SOAK_TX_PER_BLOCK", 8)
REORG_SECONDS = env_float("SOAK_REORG_SECONDS", 180 if MINUTES >= 10 else max(20, MINUTES * 60 / 4))
SAMPLE_SECONDS = env_float("SOAK_SAMPLE_SECONDS", 5)
MEMPOOL_MS = env_int("SOAK_MEMPOOL_MS", 100)
RSS_SLOPE_MAX = env_float("SOAK_RSS_SLOPE_MAX", 1.0)
SEXTANT_SIGNAL = os.environ.get("SOAK_SEXTANT_SIGNAL", "KILL").upper()
SEED = env_int("SOAK_SEED", 1)
BIN = os.environ.get("SEXTANT_BIN") or sys.exit("SEXTANT_BIN is required")
WORK = os.environ.get("SOAK_WORK") or f"/tmp/sextant-soak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
KEEP_DB = os.environ.get("SOAK_KEEP", "") not in ("", "0")
# Fractions of the run at which the planned outages happen. Sextant's restart comes early so
# that the RSS window (the last 20 minutes of a 30-minute run) is one process's.
SEXTANT_RESTART_AT = env_float("SOAK_SEXTANT_RESTART_AT", 0.2)
DAEMON_RESTART_AT = env_float("SOAK_DAEMON_RESTART_AT", 0.5)
DAEMON_DOWN_SECONDS = env_float("SOAK_DAEMON_DOWN_SECONDS", 10)
MAX_RECV = 1_000_000
COIN = 100_000_000
FEE = 5_000
SEQ = 0xFFFFFFFF

rng = random.Random(SEED)
CHILDREN = []  # every process started, killed at exit whatever happens
t_origin = time.time()


def log(msg):
    line = f"[soak {time.strftime('%H:%M:%S', time.gmtime())} +{time.time() - t_origin:7.1f}s] {msg}"
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- scripts and transactions

def hash160(b):
    return hashlib.new("ripemd160", hashlib.sha256(b).digest()).digest()


class Address:
    __slots__ = ("idx", "script", "sh", "witness_script", "wallet")

    def __init__(self, idx, wallet):
        self.idx, self.wallet = idx, wallet
        seed = f"soak {SEED} address {idx}".encode()
        kind = idx % 5
        self.witness_script = None
        if kind in (0, 1, 2):  # spendable: P2WSH(<8-byte id> OP_DROP OP_TRUE)
            ws = bytes([8]) + struct.pack("<Q", idx + (SEED << 40)) + bytes([0x75, 0x51])
            self.witness_script = ws
            self.script = bytes([0x00, 0x20]) + hashlib.sha256(ws).digest()
        elif kind == 3:  # P2PKH, receive-only
            self.script = b"\x76\xa9\x14" + hash160(seed) + b"\x88\xac"
        else:  # P2WPKH or P2SH, receive-only
            h = hash160(seed)
            self.script = (b"\x00\x14" + h) if idx % 2 else (b"\xa9\x14" + h + b"\x87")
        self.sh = electrum_sh(self.script)


def build_tx(inputs, outputs):
    """inputs: [(txid_hex, vout, witness_script)], all P2WSH spent by their witness script alone
    (OP_TRUE-style); outputs: [(value, script)]. -> (raw hex, txid)."""
    ins = b"".join(bytes.fromhex(t)[::-1] + struct.pack("<I", v) + b"\x00" + struct.pack("<I", SEQ)
                   for t, v, _ in inputs)
    outs = b"".join(struct.pack("<q", v) + varint(len(s)) + s for v, s in outputs)
    body = varint(len(inputs)) + ins + varint(len(outputs)) + outs
    version, locktime = struct.pack("<i", 2), b"\x00" * 4
    txid = sha256d(version + body + locktime)[::-1].hex()
    witness = b"".join(b"\x01" + varint(len(ws)) + ws for _, _, ws in inputs)
    return (version + b"\x00\x01" + body + witness + locktime).hex(), txid


def merkle_root(txid_hex, branch, pos):
    h = bytes.fromhex(txid_hex)[::-1]
    for b in branch:
        b = bytes.fromhex(b)[::-1]
        h = sha256d(b + h) if pos & 1 else sha256d(h + b)
        pos >>= 1
    return h[::-1].hex()


def header_merkle_root(header_hex):
    return bytes.fromhex(header_hex)[36:68][::-1].hex()


def status_of(history):
    """history: [(txid, height)] in server order -> Electrum status."""
    if not history:
        return None
    return hashlib.sha256("".join(f"{t}:{h}:" for t, h in history).encode()).hexdigest()


# ---------------------------------------------------------------- shared state and counters

class Stats:
    def __init__(self):
        self.c = {}
        self.errors = {}  # (who, method, message) -> [count, expected count]

    def inc(self, key, n=1):
        self.c[key] = self.c.get(key, 0) + n

    def error(self, method, message, expected):
        k = (method, message[:90])
        e = self.errors.setdefault(k, [0, 0])
        e[0] += 1
        e[1] += 1 if expected else 0


stats = Stats()


class Outages:
    """Planned outages, as wall-clock windows, to tell expected failures from others."""

    def __init__(self):
        self.sextant = []  # [start, end]
        self.daemon = []
        self.reorg = []  # [invalidateblock, new chain mined]
        self.sextant_down = False
        self.daemon_down = False

    def during(self, which, t, before=2.0, after=30.0):
        for s, e in getattr(self, which):
            if s - before <= t <= (e if e else time.time()) + after:
                return True
        return False

    def any(self, t, after=30.0):
        return self.during("sextant", t, after=after) or self.during("daemon", t, after=after)


outages = Outages()


# ---------------------------------------------------------------- Electrum client

class RpcError(Exception):
    def __init__(self, err):
        super().__init__(json.dumps(err))
        self.err = err


class Conn:
    def __init__(self):
        self.next_id = 0
        self.pending = {}
        self.notes = asyncio.Queue()
        self.closed = False
        self.writer = None

    async def open(self, port, ctx, local_ip, timeout=30):
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost" if ctx else None,
            local_addr=(local_ip, 0), limit=1 << 25), timeout)
        self.task = asyncio.create_task(self._read())

    async def _read(self):
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                if isinstance(msg, list):
                    for m in msg:
                        self._resolve(m)
                elif "method" in msg:
                    self.notes.put_nowait(msg)
                else:
                    self._resolve(msg)
        except (ConnectionError, OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass
        finally:
            self.closed = True
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))
            self.pending.clear()
            self.notes.put_nowait(None)

    def _resolve(self, msg):
        fut = self.pending.pop(msg.get("id"), None)
        if fut and not fut.done():
            fut.set_result(msg)

    async def call(self, method, params, timeout=60):
        if self.closed:
            raise ConnectionError("connection closed")
        self.next_id += 1
        i = self.next_id
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        self.writer.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                                      "params": params}).encode() + b"\n")
        try:
            await self.writer.drain()
            msg = await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(i, None)
        if "error" in msg and msg["error"] is not None:
            raise RpcError(msg["error"])
        return msg["result"]

    def close(self):
        if self.writer:
            try:
                self.writer.close()
            except Exception:
                pass
        if getattr(self, "task", None):
            self.task.cancel()


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------- honest wallets

class Wallet:
    def __init__(self, i, addrs, world):
        self.i = i
        self.addrs = addrs
        self.world = world
        self.ip = f"127.10.{i % 250}.{i // 250 + 1}"
        self.proto = "1.4" if i % 2 else "1.6"
        self.status = {}  # sh -> last status heard (subscribe answer or notification)
        self.txs = set()  # txids fetched and checked
        self.headers = {}  # height -> header hex (dropped on a new tip at or below it)
        self.conn = None
        self.connected = asyncio.Event()

    async def request(self, method, params, timeout=60):
        t = time.time()
        try:
            r = await self.conn.call(method, params, timeout)
            stats.inc("honest requests answered")
            return r
        except RpcError as e:
            stats.inc("honest requests answered")
            stats.inc("honest error answers")
            msg = e.err.get("message", "") if isinstance(e.err, dict) else str(e.err)
            # During a reorg a transaction may leave the block the wallet asked a proof for, or
            # the chain altogether; the daemon may be down. The wallet asks again later.
            racy = method in ("blockchain.transaction.get_merkle", "blockchain.transaction.get",
                              "blockchain.block.header")
            expected = racy or outages.any(t)
            stats.error(method, msg, expected)
            raise
        except asyncio.TimeoutError:
            stats.inc("honest requests timed out")
            stats.error(method, "timed out (no answer in 60 s)", outages.any(t))
            raise

    async def run(self, stop):
        while not stop.is_set():
            await self.world.gate.wait()
            self.conn = Conn()
            t0 = time.time()
            try:
                await self.conn.open(self.world.ssl_port, self.world.ctx, self.ip)
                stats.inc("honest connections")
                await self.session(stop)
            except (ConnectionError, OSError, ssl.SSLError, asyncio.TimeoutError, RpcError) as e:
                if stop.is_set():
                    break
                expected = outages.any(time.time()) or outages.any(t0)
                stats.inc("honest disconnects (planned outage)" if expected
                          else "honest disconnects (unexpected)")
                if not expected:
                    self.world.unexpected_disconnects.append(
                        (time.strftime('%H:%M:%S', time.gmtime()), self.i, repr(e)[:200]))
            finally:
                self.connected.clear()
                self.conn.close()
            if not stop.is_set():
                await asyncio.sleep(rng.uniform(1, 5))

    async def session(self, stop):
        await self.request("server.version", ["soak-wallet", self.proto])
        await self.request("blockchain.headers.subscribe", [])
        shs = [a.sh for a in self.addrs]
        answers = await asyncio.gather(*(self.request("blockchain.scripthash.subscribe", [sh])
                                         for sh in shs))
        synced = {}
        for sh, st in zip(shs, answers):
            # A notification may already have overtaken the answer; the newest status wins, and
            # notifications come after the answer of the same session in Sextant's order.
            self.status[sh] = st
        self.connected.set()
        for sh in shs:
            if self.status[sh] is not None:
                try:
                    await self.sync(sh)
                except RpcError:
                    pass
        next_idle = time.time() + rng.uniform(20, 90)
        while not stop.is_set():
            try:
                note = await asyncio.wait_for(self.conn.notes.get(), max(0.1, next_idle - time.time()))
            except asyncio.TimeoutError:
                note = "idle"
            if note is None:
                raise ConnectionError("server closed the session")
            if note == "idle":
                next_idle = time.time() + rng.uniform(30, 90)
                try:
                    await self.idle_activity()
                except RpcError:
                    pass
                continue
            stats.inc("honest notifications")
            if note["method"] == "blockchain.scripthash.subscribe":
                sh, st = note["params"]
                self.status[sh] = st
                self.world.last_note = time.time()
                if self.conn.notes.qsize() == 0 or rng.random() < 0.5:
                    try:
                        await self.sync(sh)
                    except RpcError:
                        pass
            elif note["method"] == "blockchain.headers.subscribe":
                height = note["params"][0]["height"]
                for h in [h for h in self.headers if h >= height - 6]:
                    del self.headers[h]
                self.world.last_note = time.time()

    async def idle_activity(self):
        r = rng.random()
        sh = rng.choice(self.addrs).sh
        if r < 0.4:
            await self.request("blockchain.scripthash.get_balance", [sh])
        elif r < 0.7:
            await self.request("blockchain.scripthash.listunspent", [sh])
        elif r < 0.8:
            await self.request("blockchain.estimatefee", [2])
        else:
            await self.request("server.ping", [])

    async def header(self, height):
        h = self.headers.get(height)
        if h is None:
            h = await self.request("blockchain.block.header", [height])
            self.headers[height] = h
        return h

    async def sync(self, sh):
        hist = await self.request("blockchain.scripthash.get_history", [sh])
        st = status_of([(e["tx_hash"], e["height"]) for e in hist])
        if st != self.status.get(sh):
            stats.inc("live: history newer than the status heard (race, resolved by the next note)")
        for e in hist:
            txid = e["tx_hash"]
            try:
                if txid not in self.txs:
                    raw = await self.request("blockchain.transaction.get", [txid])
                    b = bytes.fromhex(raw)
                    if txid_of_raw(b) != txid:
                        stats.inc("live: transaction.get returned another transaction")
                        self.world.bad_live.append(("tx", txid))
                    self.txs.add(txid)
                if e["height"] > 0 and rng.random() < 0.3:
                    m = await self.request("blockchain.transaction.get_merkle", [txid, e["height"]])
                    hdr = await self.header(m["block_height"])
                    if merkle_root(txid, m["merkle"], m["pos"]) != header_merkle_root(hdr):
                        self.headers.pop(m["block_height"], None)
                        stats.inc("live: merkle branch not matching the header (reorg race)")
                    else:
                        stats.inc("live: merkle branches verified")
            except RpcError:
                pass
        bal = await self.request("blockchain.scripthash.get_balance", [sh])
        utxos = await self.request("blockchain.scripthash.listunspent", [sh])
        if sum(u["value"] for u in utxos) != bal["confirmed"] + bal["unconfirmed"]:
            stats.inc("live: balance != sum of UTXOs (race)")


def txid_of_raw(b):
    """txid of a raw transaction, segwit or not (no MWEB transactions here)."""
    if len(b) > 6 and b[4] == 0 and b[5] == 1:
        # strip marker/flag and witnesses: parse inputs/outputs to find where witnesses start
        p = 6
        n, p = read_varint(b, p)
        for _ in range(n):
            p += 36
            l, p = read_varint(b, p)
            p += l + 4
        start_outs = p
        n, p = read_varint(b, p)
        for _ in range(n):
            p += 8
            l, p = read_varint(b, p)
            p += l
        return sha256d(b[:4] + b[6:p] + b[-4:])[::-1].hex()
    return sha256d(b)[::-1].hex()


def read_varint(b, p):
    x = b[p]
    if x < 0xFD:
        return x, p + 1
    if x == 0xFD:
        return struct.unpack_from("<H", b, p + 1)[0], p + 3
    if x == 0xFE:
        return struct.unpack_from("<I", b, p + 1)[0], p + 5
    return struct.unpack_from("<Q", b, p + 1)[0], p + 9


# ---------------------------------------------------------------- abusive sessions

ABUSE_KINDS = ["flood", "batch", "oversize", "slowloris", "idle_tls", "idle_tcp_on_tls", "garbage",
               "sub_storm", "no_reader", "half_line_close", "tls_garbage"]


async def abuser(k, world, stop):
    kind = ABUSE_KINDS[k % len(ABUSE_KINDS)] if k < len(ABUSE_KINDS) else rng.choice(ABUSE_KINDS)
    ip = f"127.200.{k % 250}.{(k // 250) % 250 + 1}"
    life = rng.uniform(5, 45)
    stats.inc(f"abusive sessions: {kind}")
    stats.inc("abusive sessions")
    world.abuser_ips.add(ip)
    deadline = time.time() + life
    writer = None
    try:
        plain = kind in ("idle_tcp_on_tls", "tls_garbage")
        use_tcp = kind in ("garbage", "flood") and k % 2 == 0
        port = world.tcp_port if use_tcp else world.ssl_port
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=None if (plain or use_tcp) else world.ctx,
            server_hostname=None if (plain or use_tcp) else "localhost",
            local_addr=(ip, 0), limit=1 << 25), 30)
        drained = [0]

        async def drain_replies():
            try:
                while True:
                    chunk = await reader.read(1 << 16)
                    if not chunk:
                        return
                    drained[0] += chunk.count(b"\n")
            except Exception:
                return

        def req(i, method, params):
            return json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params})

        if kind == "flood":
            rt = asyncio.create_task(drain_replies())
            i = 0
            while time.time() < deadline and not stop.is_set():
                lines = []
                for _ in range(200):
                    i += 1
                    m = rng.choice([("server.ping", []), ("blockchain.estimatefee", [2]),
                                    ("blockchain.scripthash.get_balance", [rng.choice(world.all_shs)]),
                                    ("blockchain.block.header", [rng.randint(0, 100)]),
                                    ("blockchain.scripthash.get_history", [rng.choice(world.all_shs)])])
                    lines.append(req(i, *m))
                writer.write(("\n".join(lines) + "\n").encode())
                await writer.drain()
                await asyncio.sleep(0.2)
            rt.cancel()
        elif kind == "batch":
            rt = asyncio.create_task(drain_replies())
            while time.time() < deadline and not stop.is_set():
                batch, size, i = [], 2, 0
                while True:
                    i += 1
                    r = req(i, "blockchain.scripthash.get_balance", [rng.choice(world.all_shs)])
                    if size + len(r) + 1 > MAX_RECV - 100:
                        break
                    batch.append(r)
                    size += len(r) + 1
                writer.write(("[" + ",".join(batch) + "]\n").encode())
                await writer.drain()
                await asyncio.sleep(rng.uniform(2, 8))
            rt.cancel()
        elif kind == "oversize":
            rt = asyncio.create_task(drain_replies())
            writer.write(b'{"id":1,"method":"server.ping","params":["' + b"x" * (MAX_RECV + 50_000) + b'"]}\n')
            await writer.drain()
            writer.write((req(2, "server.ping", []) + "\n").encode())
            await writer.drain()
            await asyncio.sleep(max(0, deadline - time.time()))
            rt.cancel()
        elif kind == "slowloris":
            line = req(1, "server.version", ["slow", "1.4"]).encode()
            i = 0
            while time.time() < deadline and not stop.is_set() and i < len(line) - 1:
                writer.write(line[i:i + 1])
                await writer.drain()
                i += 1
                await asyncio.sleep(rng.uniform(1, 4))
        elif kind in ("idle_tls", "idle_tcp_on_tls"):
            await asyncio.sleep(max(0, deadline - time.time()))
        elif kind == "tls_garbage":
            writer.write(os.urandom(rng.randint(10, 5000)))
            await writer.drain()
            await asyncio.sleep(rng.uniform(1, 10))
        elif kind == "garbage":
            rt = asyncio.create_task(drain_replies())
            junk = [b"not json\n", b"{\"id\":1,\"method\":\n", b"[]\n", b"{}\n", b"\xff\xfe\xfd\n",
                    b'{"id":[1],"method":"server.ping"}\n', b'{"id":1,"method":"no.such","params":[]}\n',
                    b'{"id":2,"method":"blockchain.scripthash.get_history","params":["zz"]}\n',
                    b'{"id":3,"method":"blockchain.block.header","params":[99999999]}\n',
                    b'{"id":4,"method":"blockchain.transaction.get","params":["' + b"00" * 32 + b'"]}\n',
                    b"[" * 5000 + b"\n", os.urandom(200) + b"\n"]
            while time.time() < deadline and not stop.is_set():
                writer.write(rng.choice(junk))
                await writer.drain()
                await asyncio.sleep(rng.uniform(0.05, 0.5))
            rt.cancel()
        elif kind == "sub_storm":
            rt = asyncio.create_task(drain_replies())
            lines = [req(i, "blockchain.scripthash.subscribe",
                         [hashlib.sha256(f"storm {k} {i}".encode()).hexdigest()]) for i in range(5000)]
            lines += [req(5000 + i, "blockchain.scripthash.subscribe", [sh])
                      for i, sh in enumerate(rng.sample(world.all_shs, min(500, len(world.all_shs))))]
            writer.write(("\n".join(lines) + "\n").encode())
            await writer.drain()
            await asyncio.sleep(max(0, deadline - time.time()))
            rt.cancel()
            # Leave abruptly: RST instead of FIN.
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_LINGER,
                                struct.pack("ii", 1, 0))
        elif kind == "no_reader":
            # Subscribes to the busiest scripthashes and headers, asks for long answers and
            # never reads: the server must pause it and drop it, not buffer without bound.
            lines = [req(1, "server.version", ["no-reader", "1.4"]),
                     req(2, "blockchain.headers.subscribe", [])]
            lines += [req(10 + i, "blockchain.scripthash.subscribe", [sh])
                      for i, sh in enumerate(rng.sample(world.all_shs, min(300, len(world.all_shs))))]
            lines += [req(1000 + i, "blockchain.block.headers", [0, 2016]) for i in range(2000)]
            writer.write(("\n".join(lines) + "\n").encode())
            try:
                await asyncio.wait_for(writer.drain(), max(0.1, deadline - time.time()))
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(max(0, deadline - time.time()))
        elif kind == "half_line_close":
            writer.write(b'{"id":1,"method":"blockchain.scripthash.get_history","params":["')
            await writer.drain()
            await asyncio.sleep(rng.uniform(0.1, 3))
    except (ConnectionError, OSError, ssl.SSLError, asyncio.TimeoutError):
        stats.inc("abusive sessions closed by the server or refused")
    finally:
        if writer is not None:
            try:
                writer.transport.abort() if kind == "sub_storm" else writer.close()
            except Exception:
                pass


async def abusers(world, stop):
    if ABUSERS <= 0:
        return
    k = 0
    running = set()
    while not stop.is_set():
        await world.gate.wait()
        while len(running) < ABUSERS and not stop.is_set():
            running.add(asyncio.create_task(abuser(k, world, stop)))
            k += 1
            await asyncio.sleep(0.05)
        done, running = await asyncio.wait(running, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    for t in running:
        t.cancel()
    await asyncio.gather(*running, return_exceptions=True)


# ---------------------------------------------------------------- processes

class World:
    pass


def start_daemon(w):
    args = ["litecoind", "-regtest", f"-datadir={w.datadir}", "-txindex=1", "-server=1",
            "-listen=0", "-connect=0", "-dnsseed=0", "-listenonion=0", "-upnp=0", "-discover=0",
            "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", f"-rpcport={w.rpc_port}",
            f"-port={w.p2p_port}", "-rpcuser=bench", "-rpcpassword=bench", "-rpcthreads=16",
            "-rpcworkqueue=1024", "-printtoconsole=0", "-disablewallet=1", "-fallbackfee=0.0001",
            "-persistmempool=1"]
    w.daemon = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(w.work, "litecoind.err"), "a"))
    CHILDREN.append(w.daemon)
    rpc = Rpc(w.rpc_port)
    for _ in range(3000):
        try:
            rpc.call("getblockcount")
            return
        except Exception:
            if w.daemon.poll() is not None:
                raise RuntimeError("litecoind exited")
            time.sleep(0.2)
    raise RuntimeError("litecoind does not answer")


def stop_daemon(w):
    try:
        Rpc(w.rpc_port).call("stop")
    except Exception:
        pass
    try:
        w.daemon.wait(300)
    except subprocess.TimeoutExpired:
        log("!! litecoind did not stop within 300 s; killing it")
        w.daemon.kill()
        w.daemon.wait()


def start_sextant(w, note):
    env = dict(os.environ, COIN="Litecoin", NET="regtest",
               DAEMON_URL=f"http://bench:bench@127.0.0.1:{w.rpc_port}/", DB_DIRECTORY=w.db,
               SERVICES=f"ssl://127.0.0.1:{w.ssl_port},tcp://127.0.0.1:{w.tcp_port}",
               SSL_CERTFILE=w.cert, SSL_KEYFILE=w.key, PEER_DISCOVERY="off", PEER_ANNOUNCE="",
               DAEMON_ZMQ_URL="off", DAEMON_POLL_INTERVAL_MEMPOOL=str(MEMPOOL_MS),
               LOG_LEVEL=os.environ.get("SOAK_LOG_LEVEL", "info"))
    with open(w.sextant_log, "a") as f:
        f.write(f"=== soak: {note} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} ===\n")
    logf = open(w.sextant_log, "a")
    w.sextant = subprocess.Popen([BIN], env=env, stdout=logf, stderr=subprocess.STDOUT)
    CHILDREN.append(w.sextant)
    w.sextant_starts += 1
    t0 = time.time()
    import socket as so
    while True:
        try:
            so.create_connection(("127.0.0.1", w.tcp_port), 0.5).close()
            break
        except OSError:
            if w.sextant.poll() is not None:
                raise RuntimeError(f"sextant exited ({w.sextant.returncode}); see {w.sextant_log}")
            if time.time() - t0 > 600:
                raise RuntimeError("sextant does not listen after 600 s")
            time.sleep(0.1)
    return time.time() - t0


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None


def fd_kinds(w):
    """Sextant's open descriptors by kind: Electrum listeners, client sockets, daemon connections,
    other sockets, DB files, other."""
    pid = w.sextant.pid
    inodes = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f)
                for line in f:
                    p = line.split()
                    lport = int(p[1].rsplit(":", 1)[1], 16)
                    rport = int(p[2].rsplit(":", 1)[1], 16)
                    inodes[p[9]] = (lport, rport, p[3])
        except OSError:
            pass
    out = {"total": 0, "listeners": 0, "client sockets": 0, "daemon sockets": 0,
           "other sockets": 0, "db files": 0, "other": 0}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        out["total"] += 1
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            info = inodes.get(m.group(1))
            if info and info[0] in (w.ssl_port, w.tcp_port):
                out["listeners" if info[2] == "0A" else "client sockets"] += 1
            elif info and info[1] == w.rpc_port:
                out["daemon sockets"] += 1
            else:
                out["other sockets"] += 1
        elif target.startswith(w.db):
            out["db files"] += 1
        else:
            out["other"] += 1
    return out


# ---------------------------------------------------------------- the chain controller

class Chain:
    """Everything that talks to the daemon: coins, payments, blocks, reorgs (runs in a thread)."""

    def __init__(self, w):
        self.w = w
        self.rpc = Rpc(w.rpc_port)
        self.desc = self.rpc.call("getdescriptorinfo", f"raw({OP_TRUE_P2WSH.hex()})")["descriptor"]
        self.pool = []  # confirmed OP_TRUE coins: (txid, vout, value)
        self.fanouts = []  # (txid, n outputs, value each), waiting for 7 confirmations
        self.next_cb = 1
        self.wallet_coins = {}  # (txid, vout) -> (value, Address)
        self.sent = {}  # txid -> {"inputs", "outputs", "fee"}
        self.unconfirmed = []  # txids sent since the last block
        self.counts = {"payments": 0, "wallet spends": 0, "double-spends (reorg)": 0, "dropped payments (reorg)": 0,
                       "rejected by the daemon": 0, "blocks mined": 0, "reorgs": 0,
                       "reorg depth sum": 0, "reorgs leaving txs unconfirmed": 0}
        self.reorg_depths = []
        self.lock = threading.Lock()

    def mine(self, n=1):
        hashes = self.rpc.call("generatetodescriptor", n, self.desc)
        self.counts["blocks mined"] += n
        self.unconfirmed = []
        return hashes

    def fanout(self, n_out=500):
        tip = self.rpc.call("getblockcount")
        if tip - self.next_cb < 110:
            return False
        block = self.rpc.call("getblock", self.rpc.call("getblockhash", self.next_cb), 2)
        self.next_cb += 1
        cb = block["tx"][0]
        value = round(cb["vout"][0]["value"] * COIN)
        each = min(9_000_000, (value - 100_000) // n_out)
        raw, txid = build_tx([(cb["txid"], 0, OP_TRUE)],
                             [(each, OP_TRUE_P2WSH)] * n_out + [(value - each * n_out - 100_000, OP_TRUE_P2WSH)])
        self.rpc.call("sendrawtransaction", raw)
        self.fanouts.append((txid, n_out, each))
        return True

    def collect_fanouts(self):
        keep = []
        for txid, n, each in self.fanouts:
            try:
                conf = self.rpc.call("getrawtransaction", txid, True).get("confirmations", 0)
            except Exception:
                conf = 0
            if conf >= 7:
                self.pool += [(txid, v, each) for v in range(n)]
            else:
                keep.append((txid, n, each))
        self.fanouts = keep
        if len(self.pool) < 600 and not self.fanouts:
            self.fanout()

    def pick_payees(self, n):
        out = []
        for _ in range(n):
            wallet = self.w.wallets_by_weight[int(rng.random() ** 2.5 * len(self.w.wallets_by_weight))]
            out.append(rng.choice(wallet))
        return out

    def send(self, inputs, outputs, fee, kind):
        raw, txid = build_tx([(t, v, ws) for t, v, _, ws in inputs], outputs)
        try:
            self.rpc.call("sendrawtransaction", raw)
        except RuntimeError as e:
            self.counts["rejected by the daemon"] += 1
            self.w.rejections.append(str(e)[:160])
            return None
        self.counts[kind] += 1
        self.sent[txid] = {"inputs": inputs, "outputs": outputs, "fee": fee}
        self.unconfirmed.append(txid)
        for vout, (value, script) in enumerate(outputs):
            a = self.w.addr_by_script.get(script)
            if a is not None and a.witness_script is not None:
                self.wallet_coins[(txid, vout)] = (value, a)
        return txid

    def pay(self):
        """One payment from the pool to 1-3 wallet addresses, change back to OP_TRUE."""
        if not self.pool:
            self.collect_fanouts()
            if not self.pool:
                return
        txid, vout, value = self.pool.pop()
        payees = self.pick_payees(rng.choice([1, 1, 2, 2, 3]))
        outs = [(rng.randint(100_000, 2_000_000), a.script) for a in payees]
        change = value - sum(v for v, _ in outs) - FEE
        outs.append((change, OP_TRUE_P2WSH))
        rng.shuffle(outs)
        self.send([(txid, vout, value, OP_TRUE)], outs, FEE, "payments")

    def wallet_spend(self):
        """A wallet pays another wallet from one or two of its coins (possibly unconfirmed),
        change back to the first coin's address."""
        if len(self.wallet_coins) < 2:
            return self.pay()
        keys = rng.sample(list(self.wallet_coins), rng.choice([1, 1, 2]))
        ins, owners = [], []
        for k in keys:
            value, a = self.wallet_coins.pop(k)
            ins.append((k[0], k[1], value, a.witness_script))
            owners.append(a)
        total = sum(i[2] for i in ins)
        if total < 50_000:
            return
        payee = self.pick_payees(1)[0]
        pay = rng.randint(10_000, (total - FEE) // 2)
        outs = [(pay, payee.script), (total - pay - FEE, owners[0].script)]
        rng.shuffle(outs)
        self.send(ins, outs, FEE, "wallet spends")

    def conflict(self, txid, kind):
        """A double-spend of `txid` (Litecoin Core has no replace-by-fee: it is mined directly
        by `generateblock`): the same inputs to another wallet address or, a dropped payment,
        all back to OP_TRUE. -> (raw, new txid, record) or None."""
        old = self.sent.get(txid)
        if not old:
            return None
        total = sum(i[2] for i in old["inputs"])
        fee = old["fee"] + 1_000
        if total - fee < 50_000:
            return None
        if kind == "dropped payments (reorg)":
            outs = [(total - fee, OP_TRUE_P2WSH)]
        else:
            payee = self.pick_payees(1)[0]
            pay = rng.randint(10_000, (total - fee) // 2)
            outs = [(pay, payee.script), (total - fee - pay, OP_TRUE_P2WSH)]
        raw, new = build_tx([(t, v, ws) for t, v, _, ws in old["inputs"]], outs)
        return raw, new, {"inputs": old["inputs"], "outputs": outs, "fee": fee, "kind": kind}

    def reorg(self):
        """invalidateblock 1-6 blocks back; the new chain's first block double-spends a quarter
        of our undone transactions (half to other wallets, half to nobody); the new chain, one
        block longer, either confirms the rest (generatetodescriptor) or leaves it in the mempool
        (empty blocks from generateblock)."""
        depth = rng.randint(1, 6)
        tip = self.rpc.call("getblockcount")
        hashes = [self.rpc.call("getblockhash", h) for h in range(tip - depth + 1, tip + 1)]
        undone = []
        for h in hashes:
            undone += [t["txid"] for t in self.rpc.call("getblock", h, 2)["tx"][1:]]
        undone_set = set(undone)
        t_invalidate = time.time()
        self.rpc.call("invalidateblock", hashes[0])
        mempool = set(self.rpc.call("getrawmempool"))
        # Only transactions whose inputs are all in the chain left: a conflict must be valid on
        # its own in the first block of the new chain.
        ours = [t for t in undone if t in mempool and t in self.sent and
                not any(i[0] in undone_set or i[0] in mempool for i in self.sent[t]["inputs"])]
        rng.shuffle(ours)
        n = max(1, len(ours) // 4) if ours else 0
        conflicts = [c for c in (self.conflict(t, "dropped payments (reorg)" if i % 2 else
                                               "double-spends (reorg)")
                                 for i, t in enumerate(ours[:n])) if c]
        leave = rng.random() < 0.3
        mined = 0
        try:
            if conflicts or leave:
                self.rpc.call("generateblock", self.desc, [c[0] for c in conflicts])
                mined = 1
                for raw, txid, rec in conflicts:
                    self.counts[rec["kind"]] += 1
                    self.sent[txid] = rec
                    for vout, (value, script) in enumerate(rec["outputs"]):
                        a = self.w.addr_by_script.get(script)
                        if a is not None and a.witness_script is not None:
                            self.wallet_coins[(txid, vout)] = (value, a)
            if leave:
                for _ in range(depth):
                    self.rpc.call("generateblock", self.desc, [])
                    mined += 1
                self.counts["reorgs leaving txs unconfirmed"] += 1
        except RuntimeError as e:
            self.w.rejections.append(f"generateblock: {e}"[:160])
            if not mined:
                conflicts = []
        self.counts["blocks mined"] += mined
        missing = tip + 1 - self.rpc.call("getblockcount")
        if missing > 0:
            self.mine(missing)
        outages.reorg.append([t_invalidate, time.time()])
        self.unconfirmed = []
        self.counts["reorgs"] += 1
        self.counts["reorg depth sum"] += depth
        self.reorg_depths.append(depth)
        return depth, len(undone), len(conflicts)

    def ghosts(self, live):
        """txids sent that are neither in the best chain nor in the mempool."""
        return [t for t in self.sent if t not in live]


# ---------------------------------------------------------------- the oracle

def oracle(w, chain):
    rpc = Rpc(w.rpc_port)
    tip = rpc.call("getblockcount")
    hashes = []
    for s in range(0, tip + 1, 500):
        r = rpc.batch("getblockhash", [[h] for h in range(s, min(tip + 1, s + 500))])
        hashes += [x["result"] for x in sorted(r, key=lambda x: x["id"])]
    wanted = w.addr_by_sh
    outputs = {}  # (txid, vout) -> (sh or None, value)
    hist = {sh: [] for sh in wanted}
    spent = set()
    txs_at = {}  # txid -> (height, pos, block hash)
    merkle_roots = {}
    headers = []
    for s in range(0, len(hashes), 50):
        blocks = rpc.batch("getblock", [[h, 2] for h in hashes[s:s + 50]])
        for b in sorted(blocks, key=lambda x: x["id"]):
            b = b["result"]
            height = b["height"]
            merkle_roots[height] = b["merkleroot"]
            for pos, tx in enumerate(b["tx"]):
                txid = tx["txid"]
                txs_at[txid] = (height, pos, b["hash"])
                touched = []
                for vin in tx["vin"]:
                    if "txid" in vin:
                        key = (vin["txid"], vin["vout"])
                        spent.add(key)
                        o = outputs.get(key)
                        if o and o[0]:
                            touched.append(o[0])
                for vout in tx["vout"]:
                    script = vout["scriptPubKey"]["hex"]
                    sh = electrum_sh(bytes.fromhex(script))
                    sh = sh if sh in wanted else None
                    outputs[(txid, vout["n"])] = (sh, round(vout["value"] * COIN))
                    if sh:
                        touched.append(sh)
                for sh in dict.fromkeys(touched):
                    hist[sh].append((txid, height))
    for s in range(0, len(hashes), 500):
        r = rpc.batch("getblockheader", [[h, False] for h in hashes[s:s + 500]])
        headers += [x["result"] for x in sorted(r, key=lambda x: x["id"])]
    mempool = rpc.call("getrawmempool", True)
    mtx = {}
    ids = list(mempool)
    for s in range(0, len(ids), 200):
        r = rpc.batch("getrawtransaction", [[t, True] for t in ids[s:s + 200]])
        for x in r:
            if x.get("result"):
                mtx[x["result"]["txid"]] = x["result"]
    mouts = {}
    for txid, tx in mtx.items():
        for vout in tx["vout"]:
            sh = electrum_sh(bytes.fromhex(vout["scriptPubKey"]["hex"]))
            mouts[(txid, vout["n"])] = (sh if sh in wanted else None, round(vout["value"] * COIN))
    mhist = {}
    mspent = set()
    delta = {}
    for txid, tx in mtx.items():
        unconf_input = False
        touched = []
        for vin in tx["vin"]:
            key = (vin["txid"], vin["vout"])
            mspent.add(key)
            if vin["txid"] in mtx:
                unconf_input = True
            o = outputs.get(key) or mouts.get(key)
            if o and o[0]:
                touched.append(o[0])
                delta[o[0]] = delta.get(o[0], 0) - o[1]
        for vout in tx["vout"]:
            o = mouts[(txid, vout["n"])]
            if o[0]:
                touched.append(o[0])
                delta[o[0]] = delta.get(o[0], 0) + o[1]
        fee = round(mempool[txid]["fees"]["base"] * COIN)
        for sh in dict.fromkeys(touched):
            mhist.setdefault(sh, []).append((txid, -1 if unconf_input else 0, fee))
    by_owner = {}
    for key, (osh, value) in outputs.items():
        if osh:
            by_owner.setdefault(osh, []).append((key, value, True))
    for key, (osh, value) in mouts.items():
        if osh:
            by_owner.setdefault(osh, []).append((key, value, False))
    result = {}
    for sh in wanted:
        conf = hist[sh]
        mem = sorted(mhist.get(sh, []), key=lambda e: (-e[1], e[0]))
        history = [{"tx_hash": t, "height": h} for t, h in conf] + \
                  [{"tx_hash": t, "height": h, "fee": f} for t, h, f in mem]
        utxos = []
        confirmed = 0
        for (txid, vout), value, in_chain in by_owner.get(sh, []):
            if in_chain:
                if (txid, vout) in spent:
                    continue
                confirmed += value
                if (txid, vout) not in mspent:
                    utxos.append((txid, vout, txs_at[txid][0], value))
            elif (txid, vout) not in mspent:
                utxos.append((txid, vout, 0, value))
        result[sh] = {"history": history,
                      "status": status_of([(e["tx_hash"], e["height"]) for e in history]),
                      "balance": {"confirmed": confirmed, "unconfirmed": delta.get(sh, 0)},
                      "utxos": sorted(utxos)}
    live = set(txs_at) | set(mtx)
    return {"tip": tip, "by_sh": result, "txs_at": txs_at, "merkle_roots": merkle_roots,
            "headers": headers, "mempool": set(mtx), "live": live}


# ---------------------------------------------------------------- the run

async def main():
    w = World()
    w.work = WORK
    os.makedirs(w.work, exist_ok=True)
    w.datadir = os.path.join(w.work, "litecoind")
    w.db = os.path.join(w.work, "sextant-db")
    w.sextant_log = os.path.join(w.work, "sextant.log")
    w.rpc_port, w.p2p_port, w.ssl_port, w.tcp_port = (free_port() for _ in range(4))
    w.sextant_starts = 0
    w.rejections = []
    w.unexpected_disconnects = []
    w.bad_live = []
    w.abuser_ips = set()
    w.last_note = time.time()
    w.gate = asyncio.Event()
    w.ctx = client_ctx()
    w.sextant = None
    w.daemon = None
    os.makedirs(w.datadir, exist_ok=True)
    w.cert, w.key = os.path.join(w.work, "cert.pem"), os.path.join(w.work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", w.key, "-out", w.cert,
                    "-days", "3", "-subj", "/CN=localhost"], check=True, capture_output=True)
    log(f"work directory {w.work}; binary {BIN}")
    log(f"{SESSIONS} sessions, {ABUSERS} abusive at a time, {MINUTES} min, a block every "
        f"{BLOCK_SECONDS} s, ~{TX_PER_BLOCK} transactions between blocks, a reorg every ~{REORG_SECONDS:.0f} s")

    # Wallets.
    w.wallets = []
    idx = 0
    for i in range(SESSIONS):
        n = rng.randint(10, 20)
        w.wallets.append([Address(idx + j, i) for j in range(n)])
        idx += n
    w.addr_by_script = {a.script: a for ws in w.wallets for a in ws}
    w.addr_by_sh = {a.sh: a for ws in w.wallets for a in ws}
    w.all_shs = list(w.addr_by_sh)
    order = list(range(SESSIONS))
    rng.shuffle(order)
    w.wallets_by_weight = [w.wallets[i] for i in order]

    start_daemon(w)
    chain = Chain(w)
    log("chain: mining coinbases")
    chain.mine(140)
    for _ in range(10):
        chain.fanout(500)
    chain.mine(8)
    chain.collect_fanouts()
    log(f"chain: {len(chain.pool)} coins in the pool; paying the wallets for 10 blocks")
    for _ in range(10):
        for _ in range(40):
            (chain.wallet_spend if rng.random() < 0.2 else chain.pay)()
        chain.mine(1)
    for _ in range(10):
        chain.pay()
    log(f"chain at {chain.rpc.call('getblockcount')}, mempool {len(chain.rpc.call('getrawmempool'))}")

    t = await asyncio.to_thread(start_sextant, w, "start")
    log(f"sextant listening after {t:.1f} s (pid {w.sextant.pid})")
    # Let it finish the initial sync before the baseline.
    rpc_tip = chain.rpc.call("getblockcount")
    probe = Conn()
    await probe.open(w.ssl_port, w.ctx, "127.0.0.1")
    await probe.call("server.version", ["soak-probe", "1.4"])
    while (await probe.call("blockchain.headers.subscribe", []))["height"] < rpc_tip:
        await asyncio.sleep(0.5)
    probe.close()
    await asyncio.sleep(2)
    fds_first = fd_kinds(w)
    w.fd_baselines = [("first start", fds_first)]
    log(f"baseline descriptors: {fds_first}")

    stop = asyncio.Event()
    rss = []  # (t, pid, MB)
    crashes = []

    async def sampler():
        while not stop.is_set():
            p = w.sextant
            if p is not None and not outages.sextant_down:
                if p.poll() is not None:
                    crashes.append((time.time(), p.returncode))
                    log(f"!! sextant exited unplanned ({p.returncode}); restarting it")
                    outages.sextant.append([time.time(), None])
                    w.gate.clear()
                    await asyncio.to_thread(start_sextant, w, "restart after an unplanned exit")
                    outages.sextant[-1][1] = time.time()
                    w.gate.set()
                else:
                    m = rss_mb(p.pid)
                    if m is not None:
                        rss.append((time.time(), p.pid, m))
            await asyncio.sleep(SAMPLE_SECONDS)

    wallets = [Wallet(i, w.wallets[i], w) for i in range(SESSIONS)]
    w.gate.set()
    tasks = [asyncio.create_task(sampler())]
    t_start = time.time()
    for wal in wallets:
        tasks.append(asyncio.create_task(wal.run(stop)))
        await asyncio.sleep(20 / max(1, SESSIONS))
    tasks.append(asyncio.create_task(abusers(w, stop)))
    log(f"{SESSIONS} sessions started")
    chaos_stop = asyncio.Event()
    end = t_start + MINUTES * 60
    events = {"sextant restart": t_start + SEXTANT_RESTART_AT * MINUTES * 60,
              "daemon restart": t_start + DAEMON_RESTART_AT * MINUTES * 60}
    timeline = []

    async def controller():
        next_block = time.time() + BLOCK_SECONDS
        next_reorg = time.time() + rng.uniform(0.5, 1.5) * REORG_SECONDS
        next_tx = time.time() + rng.expovariate(TX_PER_BLOCK / BLOCK_SECONDS)
        next_status = time.time() + 60
        while time.time() < end:
            now = time.time()
            if now >= events.get("sextant restart", 1e18):
                del events["sextant restart"]
                await sextant_restart()
                continue
            if now >= events.get("daemon restart", 1e18):
                del events["daemon restart"]
                await daemon_restart()
                next_block = time.time() + BLOCK_SECONDS
                continue
            if now >= next_reorg:
                depth, undone, replaced = await asyncio.to_thread(chain.reorg)
                timeline.append((now - t_start, f"reorg of {depth} (undone txs {undone}, double-spent {replaced})"))
                log(f"reorg of {depth} block(s): {undone} transactions undone, {replaced} double-spent")
                next_reorg = time.time() + rng.uniform(0.5, 1.5) * REORG_SECONDS
                next_block = time.time() + BLOCK_SECONDS
                continue
            if now >= next_block:
                await asyncio.to_thread(chain.mine, 1)
                await asyncio.to_thread(chain.collect_fanouts)
                next_block += BLOCK_SECONDS
                continue
            if now >= next_tx:
                r = rng.random()
                f = chain.pay if r < 0.75 else chain.wallet_spend
                await asyncio.to_thread(f)
                next_tx = time.time() + rng.expovariate(TX_PER_BLOCK / BLOCK_SECONDS)
                continue
            if now >= next_status:
                connected = sum(1 for x in wallets if x.connected.is_set())
                m = rss[-1][2] if rss else 0
                log(f"{connected}/{SESSIONS} connected, RSS {m:.0f} MB, "
                    f"{stats.c.get('honest requests answered', 0)} answered, {chain.counts}")
                next_status = now + 60
            await asyncio.sleep(max(0.01, min(next_block, next_reorg, next_tx, next_status, end) - time.time()))
        chaos_stop.set()

    async def sextant_restart():
        sig = signal.SIGKILL if SEXTANT_SIGNAL in ("KILL", "9") else signal.SIGTERM
        log(f"stopping sextant with {sig.name}")
        outages.sextant.append([time.time(), None])
        outages.sextant_down = True
        w.gate.clear()
        w.sextant.send_signal(sig)
        try:
            rc = await asyncio.to_thread(w.sextant.wait, 120)
        except subprocess.TimeoutExpired:
            w.sextant.kill()
            rc = "killed after 120 s"
        w.stopped_rc = rc
        timeline.append((time.time() - t_start, f"sextant stopped with {sig.name} (exit {rc})"))
        await asyncio.sleep(5)
        t = await asyncio.to_thread(start_sextant, w, f"restart after {sig.name}")
        await asyncio.sleep(1)
        fds = fd_kinds(w)
        w.fd_baselines.append(("after the restart", fds))
        log(f"sextant back after {t:.1f} s; descriptors {fds}")
        timeline.append((time.time() - t_start, f"sextant restarted (listening after {t:.1f} s)"))
        outages.sextant[-1][1] = time.time()
        outages.sextant_down = False
        w.gate.set()

    async def daemon_restart():
        log("stopping litecoind")
        outages.daemon.append([time.time(), None])
        outages.daemon_down = True
        await asyncio.to_thread(stop_daemon, w)
        timeline.append((time.time() - t_start, "litecoind stopped"))
        await asyncio.sleep(DAEMON_DOWN_SECONDS)
        await asyncio.to_thread(start_daemon, w)
        chain.rpc = Rpc(w.rpc_port)
        outages.daemon[-1][1] = time.time()
        outages.daemon_down = False
        timeline.append((time.time() - t_start, "litecoind started"))
        log("litecoind back")

    try:
        await controller()
        t_chaos_end = time.time()
        log("chaos over: no more transactions; settling")
        # Settle: Sextant at the daemon's tip, then no notification for 5 s.
        tip = chain.rpc.call("getblockcount")
        probe = Conn()
        await probe.open(w.ssl_port, w.ctx, "127.0.0.1")
        await probe.call("server.version", ["soak-verifier", "1.4"])
        t0 = time.time()
        while (await probe.call("blockchain.headers.subscribe", []))["height"] < tip and time.time() - t0 < 120:
            await asyncio.sleep(0.5)
        while time.time() - w.last_note < 5 and time.time() - t0 < 180:
            await asyncio.sleep(0.5)
        await asyncio.sleep(max(1, 3 * MEMPOOL_MS / 1000))
        while time.time() - w.last_note < 5 and time.time() - t0 < 180:
            await asyncio.sleep(0.5)
        log(f"settled in {time.time() - t0:.1f} s; building the oracle from the daemon")
        o = await asyncio.to_thread(oracle, w, chain)
        log(f"oracle: tip {o['tip']}, {len(o['txs_at'])} chain transactions, {len(o['mempool'])} in the mempool")
        results = None
        for attempt in range(4):
            results = await verify(w, o, wallets, probe, chain)
            if results["mismatches"] == 0 or attempt == 3:
                break
            log(f"{results['mismatches']} mismatches; checking again in 15 s")
            await asyncio.sleep(15)
        results["verify attempts"] = attempt + 1
        probe.close()
    finally:
        stop.set()
        for x in wallets:
            if x.conn:
                x.conn.close()
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    log("sessions closed; waiting 15 s for Sextant to close them too")
    await asyncio.sleep(15)
    fds_end = fd_kinds(w) if w.sextant.poll() is None else {}
    rss_end = rss_mb(w.sextant.pid)
    # A clean stop at the end.
    w.sextant.send_signal(signal.SIGTERM)
    try:
        final_rc = w.sextant.wait(120)
    except subprocess.TimeoutExpired:
        w.sextant.kill()
        final_rc = "did not stop within 120 s"
    stop_daemon(w)

    logs = classify_log(w, chain)
    summary = report(w, chain, results, rss, t_chaos_end, fds_end, final_rc, logs, timeline,
                     crashes, wallets, t_start, rss_end)
    if not KEEP_DB:
        shutil.rmtree(w.db, ignore_errors=True)
        shutil.rmtree(w.datadir, ignore_errors=True)
    return summary


class Fresh:
    """Verifier sessions, each from its own /24 and used for a few hundred requests only, so the
    cost limits (per session and per /24) never slow the final check down."""

    def __init__(self, w):
        self.w = w
        self.k = 0

    async def chunk(self, fn, items):
        self.k += 1
        conn = Conn()
        await conn.open(self.w.ssl_port, self.w.ctx, f"127.30.{self.k % 250}.{(self.k // 250) % 250 + 1}")
        try:
            await conn.call("server.version", ["soak-verifier", "1.4"])
            await asyncio.gather(*(fn(conn, x) for x in items))
        finally:
            conn.close()

    async def map(self, fn, items, size, parallel=6):
        sem = asyncio.Semaphore(parallel)

        async def one(c):
            async with sem:
                await self.chunk(fn, c)
        await asyncio.gather(*(one(items[i:i + size]) for i in range(0, len(items), size)))


async def verify(w, o, wallets, conn, chain):
    res = {"mismatches": 0, "details": []}
    fresh = Fresh(w)

    def bad(kind, detail):
        res["mismatches"] += 1
        res.setdefault("by kind", {})
        res["by kind"][kind] = res["by kind"].get(kind, 0) + 1
        if len(res["details"]) < 40:
            res["details"].append(f"{kind}: {detail}")

    by_sh = o["by_sh"]
    # 1. Notifications: each connected session's last status heard equals the oracle's.
    not_connected = 0
    for wal in wallets:
        if not wal.connected.is_set():
            not_connected += 1
            bad("session not connected at the end", wal.i)
            continue
        for a in wal.addrs:
            if wal.status.get(a.sh, "missing") != by_sh[a.sh]["status"]:
                bad("status heard by the wallet", f"wallet {wal.i} {a.sh[:16]}… heard "
                    f"{wal.status.get(a.sh, 'missing')}, oracle {by_sh[a.sh]['status']}")
    res["statuses compared"] = sum(len(x.addrs) for x in wallets)

    # 2. A fresh session: history, balance, UTXOs of every wallet scripthash.
    async def check_sh(conn, sh):
        ex = by_sh[sh]
        st, hist, bal, utxos = await asyncio.gather(
            conn.call("blockchain.scripthash.subscribe", [sh]),
            conn.call("blockchain.scripthash.get_history", [sh]),
            conn.call("blockchain.scripthash.get_balance", [sh]),
            conn.call("blockchain.scripthash.listunspent", [sh]))
        if st != ex["status"]:
            bad("subscribe status", f"{sh[:16]}… {st} vs {ex['status']}")
        if hist != ex["history"]:
            bad("history", f"{sh[:16]}… sextant {hist} oracle {ex['history']}")
        if bal != ex["balance"]:
            bad("balance", f"{sh[:16]}… sextant {bal} oracle {ex['balance']}")
        got = sorted((u["tx_hash"], u["tx_pos"], u["height"], u["value"]) for u in utxos)
        if got != ex["utxos"]:
            bad("utxos", f"{sh[:16]}… sextant {got} oracle {ex['utxos']}")
    shs = list(by_sh)
    await fresh.map(check_sh, shs, 60)
    res["scripthashes compared"] = len(shs)
    res["history entries compared"] = sum(len(v["history"]) for v in by_sh.values())
    res["utxos compared"] = sum(len(v["utxos"]) for v in by_sh.values())

    # 3. Transactions: every wallet transaction and every ghost, as the daemon answers them.
    rpc = Rpc(w.rpc_port)
    wallet_txs = sorted({e["tx_hash"] for v in by_sh.values() for e in v["history"]})
    ghosts = chain.ghosts(o["live"])
    res["wallet transactions compared"] = len(wallet_txs)
    res["ghost transactions compared"] = len(ghosts)

    def daemon_raw(ids):
        out = {}
        for s in range(0, len(ids), 200):
            for x in rpc.batch("getrawtransaction", [[t, False] for t in ids[s:s + 200]]):
                out[ids[s + x["id"]]] = x.get("result")
        return out
    expect = await asyncio.to_thread(daemon_raw, wallet_txs + ghosts)

    async def check_tx(conn, txid):
        err = None
        try:
            got = await conn.call("blockchain.transaction.get", [txid])
        except RpcError as e:
            got = None
            err = e.err
        if got != expect[txid]:
            bad("transaction.get", f"{txid}: sextant {'error ' + json.dumps(err) if got is None else got[:40] + '…'}, "
                f"daemon {'not found' if expect[txid] is None else expect[txid][:40] + '…'}"
                f"{' (double-spent or dropped)' if txid in ghosts else ''}")
        at = o["txs_at"].get(txid)
        if at and txid in wallet_txs:
            try:
                m = await conn.call("blockchain.transaction.get_merkle", [txid, at[0]])
                if m["block_height"] != at[0] or m["pos"] != at[1] or \
                        merkle_root(txid, m["merkle"], m["pos"]) != o["merkle_roots"][at[0]]:
                    bad("merkle", f"{txid} at {at}: {m}")
            except RpcError as e:
                bad("merkle", f"{txid} at {at}: error {e}")
    ids = wallet_txs + ghosts
    await fresh.map(check_tx, ids, 120)

    # 4. Headers.
    got = []
    h = 0
    while h <= o["tip"]:
        r = await conn.call("blockchain.block.headers", [h, 2016])
        got.append(r["hex"])
        h += r["count"]
        if r["count"] == 0:
            break
    if "".join(got) != "".join(o["headers"]):
        bad("headers", "the headers differ from the daemon's")
    res["headers compared"] = o["tip"] + 1
    log(f"verify: {res['mismatches']} mismatches")
    return res


LOG_RE = re.compile(r"^(\S+Z)\s+(WARN|ERROR)\s+(.*)$")
SESSION_RE = re.compile(r"session (\d+): \S+ ([0-9.]+):\d+")


def classify_log(w, chain):
    """Each WARN/ERROR line of Sextant's log: expected (why) or unexpected."""
    peers = {}
    out = {"expected": {}, "unexpected": [], "panics": 0}
    import datetime
    with open(w.sextant_log, errors="replace") as f:
        for line in f:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip("\n"))
            if "panicked" in line:
                out["panics"] += 1
                out["unexpected"].append(line)
                continue
            m = SESSION_RE.search(line)
            if m and " INFO " in line:
                peers[m.group(1)] = m.group(2)
            m = LOG_RE.match(line)
            if not m:
                continue
            try:
                ts = datetime.datetime.strptime(m.group(1)[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
            except ValueError:
                ts = 0
            msg = m.group(3)
            why = None
            r = re.search(r"chain reorganisation: undoing (\d+) block", msg)
            if r and int(r.group(1)) <= 7:
                why = "reorg (invalidateblock by the soak)"
            r2 = re.search(r"session (\d+)(?: \(([0-9.]+):\d+\))?", msg)
            peer = None
            if r2:
                peer = r2.group(2) or peers.get(r2.group(1))
            if why is None and peer and peer.startswith("127.200."):
                why = "abusive client"
            if why is None and outages.during("reorg", ts, before=1, after=30) and re.search(
                    r"behind our index", msg):
                # invalidateblock lowers the daemon's tip a moment before the longer chain is mined
                why = "reorg (daemon briefly behind during invalidateblock)"
            if why is None and outages.during("daemon", ts, before=2, after=60) and re.search(
                    r"daemon|long-poll|mempool refresh|REST|behind our index|connection|refused", msg, re.I):
                why = "daemon down (planned restart)"
            if why is None and outages.during("sextant", ts, before=2, after=60) and re.search(
                    r"daemon|long-poll|mempool refresh", msg, re.I):
                why = "around the Sextant restart"
            if why:
                out["expected"][why] = out["expected"].get(why, 0) + 1
            else:
                out["unexpected"].append(line)
    return out


def slope(points):
    n = len(points)
    if n < 3:
        return None, None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return (sxy / sxx if sxx else 0.0), my


def report(w, chain, results, rss, t_chaos_end, fds_end, final_rc, logs, timeline, crashes,
           wallets, t_start, rss_end):
    # RSS: the last 20 minutes of the chaos, one process (the last), from a minute after it started.
    last_pid = w.sextant.pid
    t_proc = min((t for t, p, _ in rss if p == last_pid), default=t_chaos_end)
    window_start = max(t_chaos_end - 20 * 60, t_proc + 60)
    pts = [((t - window_start) / 60, m) for t, p, m in rss if p == last_pid and window_start <= t <= t_chaos_end]
    sl, mean = slope(pts)
    peak = max((m for _, _, m in rss), default=0)
    base = w.fd_baselines[-1][1]
    non_db = lambda d: d.get("total", 0) - d.get("db files", 0) - d.get("daemon sockets", 0)
    c = chain.counts
    s = stats.c
    unexpected_honest = sum(v[0] - v[1] for v in stats.errors.values())
    rows = [
        ("sessions (honest, TLS)", SESSIONS),
        ("minutes", MINUTES),
        ("blocks mined (incl. reorg chains)", c["blocks mined"]),
        ("reorgs (depths)", f"{c['reorgs']} ({', '.join(map(str, chain.reorg_depths))})"),
        ("reorgs leaving txs unconfirmed", c["reorgs leaving txs unconfirmed"]),
        ("payments / wallet spends", f"{c['payments']} / {c['wallet spends']}"),
        ("double-spends in reorgs: to another wallet / to nobody (dropped)",
         f"{c['double-spends (reorg)']} / {c['dropped payments (reorg)']}"),
        ("daemon restarts", len(outages.daemon)),
        ("sextant restarts (planned, signal)", f"{len(outages.sextant) - len(crashes)} ({SEXTANT_SIGNAL})"),
        ("sextant unplanned exits", len(crashes)),
        ("abusive sessions (max 50 at a time)", s.get("abusive sessions", 0)),
        ("honest connections (incl. reconnects)", s.get("honest connections", 0)),
        ("honest requests answered", s.get("honest requests answered", 0)),
        ("honest error answers (expected/unexpected)",
         f"{s.get('honest error answers', 0) - unexpected_honest}/{unexpected_honest}"),
        ("honest requests timed out", s.get("honest requests timed out", 0)),
        ("honest notifications", s.get("honest notifications", 0)),
        ("honest disconnects: planned outage / unexpected",
         f"{s.get('honest disconnects (planned outage)', 0)} / {s.get('honest disconnects (unexpected)', 0)}"),
        ("final check: statuses / scripthashes / history entries / utxos / txs / ghost txs",
         f"{results.get('statuses compared')} / {results.get('scripthashes compared')} / "
         f"{results.get('history entries compared')} / {results.get('utxos compared')} / "
         f"{results.get('wallet transactions compared')} / {results.get('ghost transactions compared')}"),
        ("mismatches (after attempts)", f"{results['mismatches']} ({results.get('verify attempts')})"),
        ("RSS mean over the window, MB", f"{mean:.1f}" if mean else "-"),
        ("RSS slope over the window, MB/min", f"{sl:+.3f}" if sl is not None else "-"),
        ("RSS window (min, samples)", f"{(pts[-1][0] if pts else 0):.1f} min, {len(pts)}"),
        ("RSS peak / after the sessions closed, MB", f"{peak:.1f} / {rss_end or 0:.1f}"),
        ("fds at start (after restart) / end: total", f"{base.get('total')} / {fds_end.get('total')}"),
        ("fds at start / end: excluding DB files and daemon sockets", f"{non_db(base)} / {non_db(fds_end)}"),
        ("client sockets at end", fds_end.get("client sockets")),
        ("log WARN/ERROR: expected / unexpected",
         f"{sum(logs['expected'].values())} / {len(logs['unexpected'])}"),
        ("final SIGTERM exit", final_rc),
    ]
    failures = []
    if results["mismatches"]:
        failures.append(f"{results['mismatches']} mismatches")
    if logs["unexpected"]:
        failures.append(f"{len(logs['unexpected'])} unexpected log lines")
    if unexpected_honest:
        failures.append(f"{unexpected_honest} unexpected honest errors")
    if s.get("honest disconnects (unexpected)", 0):
        failures.append("unexpected honest disconnects")
    if crashes:
        failures.append("sextant exited unplanned")
    if sl is not None and sl > RSS_SLOPE_MAX:
        failures.append(f"RSS slope {sl:+.3f} MB/min over {RSS_SLOPE_MAX}")
    if fds_end.get("client sockets", 1) != 0:
        failures.append("client sockets left open")
    if non_db(fds_end) > non_db(base):
        failures.append("descriptors above the baseline")
    if final_rc != 0:
        failures.append(f"final stop exit {final_rc}")
    summary = {"rows": rows, "failures": failures, "results": results, "logs": logs,
               "timeline": timeline, "errors": [[k[0], k[1], v[0], v[1]] for k, v in stats.errors.items()],
               "stats": stats.c, "chain": c, "fd baselines": w.fd_baselines, "fds end": fds_end,
               "rss": rss, "unexpected disconnects": w.unexpected_disconnects[:50],
               "rejections": w.rejections[:50], "sextant log": w.sextant_log}
    with open(os.path.join(w.work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    print()
    print("| what | value |")
    print("|---|---:|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print()
    if logs["expected"]:
        print("Expected log lines: " + ", ".join(f"{k}: {v}" for k, v in logs["expected"].items()))
    for line in logs["unexpected"][:30]:
        print(f"UNEXPECTED LOG: {line[:300]}")
    for k, v in stats.errors.items():
        print(f"honest error answers: {v[0]} ({v[1]} expected) {k[0]}: {k[1]}")
    for d in results["details"][:30]:
        print(f"MISMATCH {d}")
    for d in w.unexpected_disconnects[:10]:
        print(f"UNEXPECTED DISCONNECT {d}")
    for when, what in timeline:
        print(f"  +{when:7.1f}s {what}")
    print(f"\n{'FAIL: ' + '; '.join(failures) if failures else 'PASS'} (work directory {w.work})")
    return summary


if __name__ == "__main__":
    code = 0
    try:
        summary = asyncio.run(main())
        code = 1 if summary["failures"] else 0
    except KeyboardInterrupt:
        code = 130
    except Exception:
        traceback.print_exc()
        code = 2
    finally:
        # Whatever happened: no process of ours outlives the run.
        for p in CHILDREN:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
    sys.exit(code)
