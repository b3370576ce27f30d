"""Benchmark servers for the end-to-end comparison (issue 8), each implementation in its own process.

Usage::

    python benchmarks/e2e_server.py --impl os3p|peer|floor|central|peer-sync|node [--port P] [--host H]

Prints ``READY <impl> port=<port> pid=<pid>`` once it listens, and stops on SIGTERM (or SIGINT).  On SIGUSR1
it runs a full garbage collection and prints ``GC objects=<n> full_collect_ms=<ms>`` (the stall every
connection would feel).

Implementations (every one answers BootNotification, Heartbeat and MeterValues):

- ``os3p``: our Central System server on the default transport (``os3p_trio.serve_central_system``: the
  thin wsproto adapter), everything on: open registration (``InMemoryRegistry(open_registration=True)``),
  boot gating (a station must boot before any other call, PROTOCOL-DECISIONS §5), validation of every
  message in both directions (``os3p_core.Config`` defaults), typed handlers (the request structured to
  ``os3p_core.payloads`` classes, a typed response unstructured and validated).  Endpoint ``/OS3P``.
- ``central``: the Central System *service* (``os3p_trio.central``) on a temporary SQLite database with
  open registration: the same server plus the store (every BootNotification, Heartbeat and MeterValues
  committed before its CALLRESULT, PROTOCOL-DECISIONS §7) and the operator API in the same process.
- ``peer``: what people use today: the ``ocpp`` package (mobilityhouse, 2.1.0) ``ChargePoint`` (its
  OCPP 1.6 RPC layer) on the ``websockets`` package (asyncio server, no compression negotiated by our load
  generator), one ``ChargePoint`` per connection with ``@on`` handlers for the three actions.  Schema
  validation: ocpp validates a CALL and its CALLRESULT when it has a schema for the action name
  (``ocpp.messages.get_validator``: a ``jsonschema.Draft4Validator`` per schema, cached in
  ``ocpp.messages._validators`` under ``<Action>[Response]_<version>``).  OS³P's three actions share their
  *names* with OCPP 1.6 but not their payloads (OCPP 1.6's BootNotification requires
  ``chargePointVendor``, its MeterValues ``connectorId``): with its own schemas ocpp would refuse every
  OS³P message.  So we put Draft4Validators of the *OS³P* schemas (``schemas/*.json``) into that cache
  for the six keys used: ocpp then validates every request and every response with our rules through its
  own code path (no format checker: it checks no ``date-time``, we do).  ocpp's default
  ``ASYNC_VALIDATION = True`` is kept: each validation runs in the default thread-pool executor.  For the
  OS³P-only actions (StreetlightStatusNotification, ...) the same cache entries would be needed; without
  them ocpp answers ``NotImplemented`` ("Failed to validate action") unless the handler skips validation.
- ``peer-sync``: ``peer`` with ``ocpp.messages.ASYNC_VALIDATION = False`` (validation inline), for reference.
- ``node``: the strongest peer, Node's ``ocpp-rpc`` 2.2.1 (``ws`` + ``ajv``) in strict mode with the OS³P
  schemas, validating every request and response (``benchmarks/node/server.js``; its npm dependencies are
  installed into ``benchmarks/node/node_modules`` on first use with ``npm ci``).  Stores nothing.  The process
  is replaced by ``node`` (``exec``), so the pid the load generator measures is Node's.
- ``floor``: bare trio + wsproto (``wsproto.WSConnection``, one task per connection), no protocol logic
  and no validation: each text message is answered with a CALLRESULT of a fixed shape echoing the message
  id (``[3,"<id>",{"currentTime":"..."}]``).  The floor for our stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

IMPLS = ("os3p", "peer", "floor", "central", "peer-sync", "node")
NODE_DIR = Path(__file__).resolve().parent / "node"
SUBPROTOCOL = "OS3P1.0"
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _ready(impl: str, port: int) -> None:
    print(f"READY {impl} port={port} pid={os.getpid()}", flush=True)


def _raise_nofile() -> None:
    # One socket per station: take every file descriptor the hard limit allows (20,000 here).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _gc_report() -> None:
    """On SIGUSR1: how many objects a full collection walks, and how long it stalls the loop (ms)."""
    import gc
    import time

    t0 = time.perf_counter()
    unreachable = gc.collect()
    ms = (time.perf_counter() - t0) * 1e3
    objects = len(gc.get_objects())
    print(f"GC objects={objects} full_collect_ms={ms:.1f} unreachable={unreachable}", flush=True)


async def _gc_reporter() -> None:
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            _gc_report()


async def _until_signal(cancel: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            cancel.cancel()
            return


# --- os3p ---------------------------------------------------------------------------------------------------


def _os3p_router() -> Any:
    from os3p_core import Action
    from os3p_core.payloads import (
        BootNotificationRequest,
        BootNotificationResponse,
        HeartbeatRequest,
        HeartbeatResponse,
        MeterValuesRequest,
        MeterValuesResponse,
        RegistrationStatus,
    )
    from os3p_trio import Router, Session

    router = Router()
    counters = {"sampled_values": 0}

    # Plain (non-async) handlers: quick answers run inline in the connection's reader (no task).
    @router.on(Action.BOOT_NOTIFICATION)
    def boot(session: Session, request: BootNotificationRequest) -> BootNotificationResponse:
        return BootNotificationResponse(
            status=RegistrationStatus.ACCEPTED, current_time=datetime.now(UTC), interval=300
        )

    @router.on(Action.HEARTBEAT)
    def heartbeat(session: Session, request: HeartbeatRequest) -> HeartbeatResponse:
        return HeartbeatResponse(current_time=datetime.now(UTC))

    @router.on(Action.METER_VALUES)
    def meter_values(session: Session, request: MeterValuesRequest) -> MeterValuesResponse:
        counters["sampled_values"] += sum(len(mv.sampled_value) for mv in request.meter_value)
        return MeterValuesResponse()

    return router


async def serve_os3p(host: str, port: int) -> None:
    from os3p_trio import InMemoryRegistry, ServerConfig, serve_central_system

    router = _os3p_router()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_central_system(
                router,
                port,
                host=host,
                registry=InMemoryRegistry(open_registration=True),
                config=ServerConfig(),
                task_status=task_status,
            )
        )
        nursery.start_soon(_gc_reporter)
        _ready("os3p", server.port)
        await _until_signal(nursery.cancel_scope)


async def serve_central(host: str, port: int) -> None:
    from os3p_trio.central import CentralConfig, FileArea, StoreConfig, open_sqlite_store
    from os3p_trio.central._server import open_central_service

    with tempfile.TemporaryDirectory(prefix="os3p-e2e-") as tmp:
        files = FileArea(Path(tmp) / "firmware", Path(tmp) / "uploads")
        async with (
            open_sqlite_store(Path(tmp) / "central.db", StoreConfig()) as store,
            open_central_service(
                store, CentralConfig(open_registration=True), host=host, port=port, files=files
            ) as service,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_gc_reporter)
            _ready("central", service.server.port)
            await _until_signal(nursery.cancel_scope)


# --- floor --------------------------------------------------------------------------------------------------

_FLOOR_TAIL = '",{"currentTime":"2026-11-26T08:00:00.000Z"}]'


async def serve_floor(host: str, port: int) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

    async def handle(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                ws.receive_data(data)
                out: list[bytes] = []
                closing = False
                for event in ws.events():
                    if isinstance(event, TextMessage):
                        # No protocol logic: echo the message id in a CALLRESULT of a fixed shape.
                        unique_id = event.data.split('"', 2)[1]
                        out.append(ws.send(TextMessage(data='[3,"' + unique_id + _FLOOR_TAIL)))
                    elif isinstance(event, Request):
                        out.append(ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
                    elif isinstance(event, Ping):
                        out.append(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        out.append(ws.send(event.response()))
                        closing = True
                if out:
                    await stream.send_all(b"".join(out))
                if closing:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except Exception:  # a malformed peer closes only its own connection
            return
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await trio.open_tcp_listeners(port, host=host, backlog=4096)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        nursery.start_soon(_gc_reporter)
        _ready("floor", int(listeners[0].socket.getsockname()[1]))
        await _until_signal(nursery.cancel_scope)


# --- peer ---------------------------------------------------------------------------------------------------


def _seed_ocpp_validators() -> None:
    """Give ocpp's validator cache Draft4Validators of the OS³P schemas (see the module docstring)."""
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]
    from ocpp import messages

    for action in ("BootNotification", "Heartbeat", "MeterValues"):
        for kind, suffix in (("Request", ""), ("Response", "Response")):
            schema = json.loads((SCHEMAS / f"{action}{kind}.json").read_text())
            messages._validators[f"{action}{suffix}_1.6"] = Draft4Validator(schema)


async def serve_peer(host: str, port: int, *, sync_validation: bool) -> None:
    from ocpp import messages
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call_result
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.typing import Subprotocol

    _seed_ocpp_validators()
    if sync_validation:
        messages.ASYNC_VALIDATION = False
    counters = {"sampled_values": 0}

    def now() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    class PeerCentral(ChargePoint):  # type: ignore[misc]
        @on("BootNotification")  # type: ignore[untyped-decorator]
        def on_boot(self, **kwargs: Any) -> Any:
            return call_result.BootNotification(current_time=now(), interval=300, status="Accepted")

        @on("Heartbeat")  # type: ignore[untyped-decorator]
        def on_heartbeat(self, **kwargs: Any) -> Any:
            return call_result.Heartbeat(current_time=now())

        @on("MeterValues")  # type: ignore[untyped-decorator]
        def on_meter_values(self, meter_value: list[dict[str, Any]], **kwargs: Any) -> Any:
            counters["sampled_values"] += sum(len(mv["sampled_value"]) for mv in meter_value)
            return call_result.MeterValues()

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        identity = connection.request.path.rstrip("/").rsplit("/", 1)[-1]
        cp = PeerCentral(identity, connection)
        try:
            await cp.start()
        except Exception:  # websockets.ConnectionClosed and friends: the connection is over
            return

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _gc_report)
    async with serve(handler, host, port, subprotocols=[Subprotocol(SUBPROTOCOL)], backlog=4096) as server:
        sock_port = next(iter(server.sockets)).getsockname()[1]
        _ready("peer-sync" if sync_validation else "peer", int(sock_port))
        await stop.wait()


def exec_node(host: str, port: int) -> None:
    """Replace this process by the ocpp-rpc server (installing its npm dependencies first if needed)."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("--impl node needs Node.js (`node` on PATH)")
    if not (NODE_DIR / "node_modules" / "ocpp-rpc").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("--impl node needs npm to install ocpp-rpc")
        subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True,
                       stdout=sys.stderr)
    sys.stdout.flush()
    os.execv(node, [node, str(NODE_DIR / "server.js"), "--port", str(port), "--host", host])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    if not args.host.startswith("127."):
        parser.error("loopback only (127.0.0.0/8)")
    _raise_nofile()
    if args.impl == "os3p":
        trio.run(serve_os3p, args.host, args.port)
    elif args.impl == "central":
        trio.run(serve_central, args.host, args.port)
    elif args.impl == "floor":
        trio.run(serve_floor, args.host, args.port)
    elif args.impl == "node":
        exec_node(args.host, args.port)
    else:
        asyncio.run(serve_peer(args.host, args.port, sync_validation=args.impl == "peer-sync"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
