#!/usr/bin/env python3
"""Compares the statuses an Electrum wallet holds with the server's, for
scripts/electrum-wallet-check.sh.

Usage: statuses.py HOST PORT < statuses.json   (the output of the launcher's `sextant_statuses`)

Opens its own TLS session (protocol 1.6, the version Electrum 4.7 negotiates), subscribes to
every address's script hash and prints one line per address whose status differs; exits 1 if
any does. A wallet that took a status notification in a race (history fetched after it had
changed again) logs "status mismatch" and waits for the next notification; equal statuses at the
end show that every such race was settled.

Runs in Electrum's venv, for aiorpcx.
"""
import asyncio
import json
import ssl
import sys

from aiorpcx import connect_rs


async def main(host: str, port: int, wallet: list) -> int:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's certificate is self-signed
    differ = 0
    async with connect_rs(host, port, ssl=ctx) as session:
        version = await session.send_request("server.version", ["sextant-check", "1.6"])
        if version[1] != "1.6":
            print(f"server answered {version!r} to 1.6")
            return 1
        for item in wallet:
            server = await session.send_request("blockchain.scripthash.subscribe", [item["scripthash"]])
            if server != item["status"]:
                differ += 1
                print(f"{item['address']}: wallet {item['status']}, server {server}")
    print(f"{len(wallet)} addresses, {differ} statuses differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), json.load(sys.stdin))))
