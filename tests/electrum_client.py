"""A real Electrum-protocol client (aiorpcX, the library ElectrumX itself is built on) against a
Sextant server over TLS. Driven by tests/electrum_transports.rs:

    python electrum_client.py HOST PORT

Prints one JSON object per line on stdout, which the Rust side reads:
  {"event": "version", "result": [...]}
  {"event": "tip", "result": {...}}          (after blockchain.headers.subscribe)
  {"event": "notification", "params": [...]} (the first header notification)
then exits 0. Any failure exits non-zero with a traceback. The Rust side mines a block once it
has seen the "tip" line.
"""

import asyncio
import json
import ssl
import sys

from aiorpcx import Notification, RPCSession, connect_rs


def emit(**kw):
    print(json.dumps(kw), flush=True)


class Client(RPCSession):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.headers = asyncio.Queue()

    async def handle_request(self, request):
        if isinstance(request, Notification) and request.method == "blockchain.headers.subscribe":
            self.headers.put_nowait(list(request.args))


async def main(host, port):
    # The test's certificate is self-signed: no verification.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    async with connect_rs(host, port, ssl=ctx, session_factory=Client) as session:
        version = await session.send_request("server.version", ["aiorpcx-test", ["1.4", "1.4.2"]])
        emit(event="version", result=version)
        tip = await session.send_request("blockchain.headers.subscribe", [])
        emit(event="tip", result=tip)
        params = await asyncio.wait_for(session.headers.get(), timeout=60)
        emit(event="notification", params=params)
        # The session still answers after the notification.
        assert await session.send_request("server.ping", []) is None


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
