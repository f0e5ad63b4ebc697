#!/usr/bin/env python3
"""Runs Electrum (4.7.x, from its source tree) on Litecoin regtest, for scripts/electrum-wallet-check.sh.

Usage: launcher.py ELECTRUM_SRC_DIR [electrum arguments…]   (pass --regtest among them)

Electrum is a Bitcoin wallet, but Litecoin regtest blocks have 80-byte headers hashed with
double SHA-256, and Electrum checks no proof of work on test networks (Litecoin's is scrypt),
so re-pointing Electrum's regtest network at Litecoin's constants before it starts is enough
for it to follow a litecoind -regtest chain through an Electrum server. Both the daemon and
each command-line call go through this launcher, so they agree on addresses.

It also adds three commands that report what the check needs and the stock commands do not show:
`sextant_probe`, the protocol version the daemon's server connection negotiated and the daemon's
local chain tip (height and hash), and `sextant_txinfo TXID`, the height the wallet holds a
transaction at and the block its SPV proof was checked against (both compared with litecoind's
after a reorg), and `sextant_statuses`, the status (protocol hash of the history) the wallet
holds for each of its addresses, which statuses.py compares with the server's.
"""
import os
import runpy
import sys

# Litecoin Core's chainparams.cpp, CRegTestParams.
LITECOIN_REGTEST = {
    "GENESIS": "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9",
    "SEGWIT_HRP": "rltc",
    "BOLT11_HRP": "rltc",
    "ADDRTYPE_P2PKH": 111,
    "ADDRTYPE_P2SH": 58,
    "WIF_PREFIX": 239,
}


def patch_constants() -> None:
    from electrum import constants

    net = constants.BitcoinRegtest
    for name, value in LITECOIN_REGTEST.items():
        setattr(net, name, value)
    # No checkpoints and no default servers: the chain is a fresh regtest one, and the check
    # runs with --oneserver against the server it started.
    net._cached_checkpoints = []
    net._cached_default_servers = {}


def add_probe_command() -> None:
    from electrum import commands

    async def sextant_probe(self):
        """Negotiated protocol version and local chain tip (for Sextant's wallet check)."""
        iface = self.network.interface
        chain = self.network.blockchain()
        height = chain.height()
        return {
            "connected": self.network.is_connected(),
            "server": str(iface.server) if iface else None,
            "protocol": ".".join(map(str, iface.active_protocol_tuple)) if iface else None,
            "server_tip": iface.tip if iface else None,
            "height": height,
            "tip_hash": chain.get_hash(height) if height >= 0 else None,
        }

    async def sextant_txinfo(self, txid, wallet=None):
        """How the wallet holds a transaction: its height and the block its SPV proof was checked in.

        arg:txid:txid:Transaction ID
        """
        info = wallet.adb.get_tx_height(txid)
        verified = wallet.db.get_verified_tx(txid)
        return {
            "height": info.height(),
            "conf": info.conf,
            "verified_height": verified._height if verified else None,
            "verified_block": verified.header_hash if verified else None,
        }

    async def sextant_statuses(self, wallet=None):
        """Every wallet address with its script hash and the status of the history the wallet holds."""
        from electrum.bitcoin import address_to_scripthash
        from electrum.synchronizer import history_status

        return [
            {
                "address": addr,
                "scripthash": address_to_scripthash(addr),
                "status": history_status(wallet.adb.db.get_addr_history(addr)),
            }
            for addr in wallet.get_addresses()
        ]

    commands.Commands.sextant_probe = commands.command("n")(sextant_probe)
    commands.Commands.sextant_statuses = commands.command("w")(sextant_statuses)
    commands.Commands.sextant_txinfo = commands.command("w")(sextant_txinfo)


def main() -> None:
    if len(sys.argv) < 2 or not os.path.isfile(os.path.join(sys.argv[1], "run_electrum")):
        sys.exit("usage: launcher.py ELECTRUM_SRC_DIR [electrum arguments…]")
    src = os.path.abspath(sys.argv[1])
    sys.path.insert(0, src)
    patch_constants()
    add_probe_command()
    sys.argv = [os.path.join(src, "run_electrum")] + sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
