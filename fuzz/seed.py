#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/<target>/, not committed) from the test vectors.

Vectors come from ../shared/vectors if present, else the tree's copy tests/data/vectors; both
are only read. Block and transaction targets get every long hex string of their chain's vectors
(blocks, headers, transactions, scripts) as raw bytes; the others get hand-written requests,
peer answers and the embedded coin files.
"""
import hashlib
import json
import pathlib
import re

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
VECTORS = next(
    p for p in [ROOT.parent / "shared" / "vectors", ROOT / "tests" / "data" / "vectors"] if p.is_dir()
)
CORPUS = FUZZ / "corpus"
HEX = re.compile(r"^(?:[0-9a-fA-F]{2}){20,}$")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def hex_strings(v):
    if isinstance(v, str):
        if HEX.match(v):
            yield bytes.fromhex(v)
    elif isinstance(v, dict):
        for x in v.values():
            yield from hex_strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from hex_strings(x)


def chain_seeds():
    for path in sorted(VECTORS.rglob("*")):
        rel = path.relative_to(VECTORS).as_posix()
        if path.suffix == ".json":
            found = list(hex_strings(json.loads(path.read_text())))
        elif path.suffix == ".txt":
            found = [bytes.fromhex(path.read_text().strip())]
        else:
            continue
        if rel.startswith("komodo/"):
            target = "chain_zcash"
        elif rel.startswith("kevacoin/"):
            target = "chain_kevacoin"
        elif "litecoin" in rel:
            target = "chain_litecoin"
        else:
            target = "chain_bitcoin"
        for raw in found:
            put(target, raw)
            # Bitcoin-format transactions in the other vectors are Bitcoin seeds too.
            if target != "chain_bitcoin" and len(raw) < 100_000:
                put("chain_bitcoin", raw)


METHODS = """blockchain.block.header blockchain.block.headers blockchain.estimatefee
blockchain.headers.subscribe blockchain.relayfee blockchain.scripthash.get_balance
blockchain.scripthash.get_history blockchain.scripthash.get_mempool
blockchain.scripthash.listunspent blockchain.scripthash.subscribe
blockchain.scripthash.unsubscribe blockchain.scriptpubkey.get_balance
blockchain.scriptpubkey.subscribe blockchain.transaction.broadcast
blockchain.transaction.broadcast_package blockchain.transaction.get
blockchain.transaction.get_merkle blockchain.transaction.id_from_pos
blockchain.outpoint.subscribe blockchain.keva.get_keyvalues blockchain.keva.get_hashtag
mempool.get_fee_histogram mempool.get_info mempool.recent server.add_peer server.banner
server.donation_address server.features server.peers.subscribe server.ping
server.version""".split()

ARGS = [
    [],
    ["8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161"],
    ["8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161", True],
    [100, 5, 110],
    ["0100000001", False],
    ["electrum 4.5", ["1.4", "1.7"]],
    {"scripthash": "00" * 32, "verbose": 1},
    ["76a914" + "11" * 20 + "88ac"],
    [{"hosts": {"a.example": {"tcp_port": 50001}}}],
]


def request_seeds():
    for i, m in enumerate(METHODS):
        req = {"jsonrpc": "2.0", "id": i, "method": m, "params": ARGS[i % len(ARGS)]}
        put("request_line", json.dumps(req))
        put("request_line", json.dumps({"id": str(i), "method": m, "params": ARGS[(i + 3) % len(ARGS)]}))
    batch = [{"jsonrpc": "2.0", "id": n, "method": m, "params": []} for n, m in enumerate(METHODS[:4])]
    put("request_line", json.dumps(batch))
    put("request_line", '{"jsonrpc":"1.0","id":1,"method":"server.version","params":["x","1.4"],"result":null,"error":null}')
    put("request_line", '{"jsonrpc":"2.0","method":"server.ping"}\n{"jsonrpc":"2.0","id":null,"method":"server.banner"}\n')
    put("request_line", '[{"jsonrpc":"2.0","result":1,"id":1}]')


def peer_seeds():
    features = {
        "hosts": {"electrum.example.org": {"tcp_port": 50001, "ssl_port": 50002},
                  "abcdefghijklmnop.onion": {"tcp_port": 50001}},
        "genesis_hash": "12a765e31ffd4059bada1e25190f6e98c99d9714d334efa41a195a7e7e04bfe2",
        "hash_function": "sha256", "server_version": "ElectrumX 1.16.0",
        "protocol_min": "1.4", "protocol_max": "1.4.2", "pruning": None,
    }
    peers = [["1.2.3.4", "electrum.example.org", ["v1.4.2", "s50002", "t50001", "p10000"]],
             ["2001:db8::1", "2001:db8::1", ["v1.4", "s", "t"]]]
    put("peer_features", json.dumps(features))
    put("peer_features", json.dumps([features, peers]))
    put("peer_features", json.dumps(peers))
    put("peer_features", "electrum.example.org v1.4.2 s50002 t p100")


def compact(n):
    if n < 0xFD:
        return bytes([n])
    return b"\xfd" + n.to_bytes(2, "little")


def keva_seeds():
    """Keva scripts alone, a transaction paying to all of them, and each genesis block with that
    transaction appended: the vectors hold the scripts but no block that carries one."""
    vectors = json.loads((VECTORS / "kevacoin" / "keva_index_vectors.json").read_text())
    scripts = [bytes.fromhex(s["script_hex"]) for s in vectors.get("keva_output_scripts", [])]
    if not scripts:
        return
    for s in scripts:
        put("chain_kevacoin", s)
    tx = (0x7100).to_bytes(4, "little") + b"\x01" + b"\x11" * 32 + bytes(4) + b"\x00" + b"\xff" * 4
    tx += compact(len(scripts))
    for s in scripts:
        tx += (1_000_000).to_bytes(8, "little") + compact(len(s)) + s
    tx += bytes(4)
    put("chain_kevacoin", tx)
    for path in sorted((VECTORS / "kevacoin").glob("genesis_*.json")):
        g = json.loads(path.read_text())
        header, block = bytes.fromhex(g["header"]), bytes.fromhex(g["block"])
        if block[len(header)] == 1:
            put("chain_kevacoin", header + b"\x02" + block[len(header) + 1 :] + tx)


def coin_seeds():
    for path in sorted((ROOT / "coins").glob("*.toml")):
        put("coin_file", path.read_bytes())


if __name__ == "__main__":
    chain_seeds()
    keva_seeds()
    request_seeds()
    peer_seeds()
    coin_seeds()
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {sum(1 for _ in d.iterdir())} seeds")
