"""The operator's web console at ``/`` of the operator port: server-rendered pages (Starlette + Jinja2),
htmx and uPlot vendored under ``/static/`` (no CDN, no build step), live updates by Server-Sent Events.

Access (issue 15 item 6): with an API token the browser signs in once at ``/login`` with that token and gets
a session cookie (HttpOnly, SameSite=Strict, 12 h, signed with a key derived from the token); without a token
the console is open only when the operator port is bound to loopback (and only under a loopback ``Host``,
against DNS rebinding).  Every state-changing form carries a CSRF token bound to the session cookie.

Built for 100,000 stations: the overview shows aggregates only (cached, see :class:`~._monitor.Monitor`),
the station list is searched and paged on the server (keyset paging of ``Store.list_stations``; an identity
prefix search reads from the prefix on), and live updates are pushed, never polled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
import trio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from os3p_core import Action, Role, SchemaViolation, load_schema
from os3p_trio import CallErrorReceived, CallTimeout, ConnectionClosed, InvalidResult

from ._logging import security_event
from ._monitor import Monitor
from ._service import CentralSystem, NotConnected, UnknownAction, format_time
from ._store import EventKind, StationRecord, UnknownStation

__all__ = ["COMMANDS", "console_routes"]

#: The 13 Central-System-initiated actions (annex §7), the console's command forms.
COMMANDS = tuple(a.value for a in Action if a.sender is Role.CENTRAL_SYSTEM)
COOKIE = "os3p_console"
SESSION_SECONDS = 12 * 3600
PAGE = 50
#: Stations a filtered list reads per request at most (a filter the store cannot apply is applied here).
SCAN = 5000

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("os3p_trio.central", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)
_env.filters["t"] = lambda v: "-" if v is None else format_time(v)
_env.filters["q"] = lambda v: quote(str(v), safe="")
_env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False)


def _fields(action: str) -> list[dict[str, Any]]:
    """Form fields from the request schema: scalars get inputs (enums a select), the rest JSON."""
    schema = load_schema(action, "Request")
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type")
        out.append(
            {
                "name": name,
                "type": kind if kind in ("string", "integer", "boolean") else "json",
                "enum": prop.get("enum"),
                "required": name in required,
                "description": prop.get("description", ""),
            }
        )
    return out


_FORMS = {a: _fields(a) for a in COMMANDS}


def _payload(action: str, form: Any) -> dict[str, Any]:
    """The CALL payload from a command form; ``ValueError`` for a field that is not what its type says."""
    payload: dict[str, Any] = {}
    for field in _FORMS[action]:
        raw = form.get(f"f.{field['name']}")
        if raw is None or str(raw).strip() == "":
            continue
        text = str(raw).strip()
        if field["type"] == "integer":
            try:
                payload[field["name"]] = int(text)
            except ValueError:
                raise ValueError(f"{field['name']} must be an integer") from None
        elif field["type"] == "boolean":
            payload[field["name"]] = text == "true"
        elif field["type"] == "json":
            try:
                payload[field["name"]] = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{field['name']} is not JSON: {exc}") from None
        else:
            payload[field["name"]] = text
    return payload


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class _Access:
    """Sign-in, session cookies and CSRF tokens (stateless: HMAC-signed cookie)."""

    def __init__(self, api_token: str | None) -> None:
        self.token = api_token
        seed = api_token.encode() if api_token is not None else secrets.token_bytes(32)
        self.key = hmac.new(seed, b"os3p-console-session", hashlib.sha256).digest()

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def new_cookie(self, signed_in: bool) -> str:
        body = f"{int(time.time()) + SESSION_SECONDS}.{secrets.token_hex(8)}.{1 if signed_in else 0}"
        return f"{body}.{self._sign(body)}"

    def session(self, request: Request) -> tuple[str, bool] | None:
        """(cookie, signed in) for a valid unexpired cookie."""
        value = request.cookies.get(COOKIE, "")
        body, _, sig = value.rpartition(".")
        if not body or not hmac.compare_digest(sig, self._sign(body)):
            return None
        expiry, _, rest = body.partition(".")
        if not expiry.isdigit() or int(expiry) < time.time():
            return None
        return value, rest.endswith(".1")

    def csrf(self, cookie: str) -> str:
        return self._sign("csrf:" + cookie)

    def refusal(self, request: Request) -> Response | None:
        """``None`` when the request may see the console, else the answer to give."""
        if self.token is not None:
            found = self.session(request)
            if found is not None and found[1]:
                return None
            if request.method == "GET" and not request.url.path.startswith("/console/"):
                return RedirectResponse(f"/login?next={quote(request.url.path, safe='/')}", status_code=303)
            return JSONResponse({"error": "Unauthorized", "message": "sign in at /login"}, status_code=401)
        server = request.scope.get("server") or ("", 0)
        if not _loopback(str(server[0])):
            return HTMLResponse(
                "The console needs an API token (--api-token-file) when not bound to loopback.", 403
            )
        host = (request.headers.get("host") or "").rsplit(":", 1)[0]
        if not _loopback(host):
            return HTMLResponse("The console without a token answers loopback Host names only.", 403)
        return None


def console_routes(central: CentralSystem, monitor: Monitor, api_token: str | None) -> list[Any]:
    """The console's routes (pages, forms, live stream, static files)."""
    store = central.store
    access = _Access(api_token)

    def page(
        handler: Callable[[Request], Awaitable[Response]], *, state_changing: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def checked(request: Request) -> Response:
            refused = access.refusal(request)
            if refused is not None:
                return refused
            found = access.session(request)
            cookie = found[0] if found is not None else access.new_cookie(False)
            request.state.csrf = access.csrf(cookie)
            request.state.who = "console-session" if api_token is not None else "loopback"
            if state_changing:
                form = await request.form()
                given = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
                if found is None or not hmac.compare_digest(given, access.csrf(cookie)):
                    security_event(
                        "csrf_refused", f"{request.method} {request.url.path}", path=request.url.path
                    )
                    return HTMLResponse("CSRF token missing or wrong: reload the page.", 403)
                request.state.form = form
            response = await handler(request)
            if found is None:
                _set_cookie(response, cookie)
            return response

        return checked

    def render(request: Request, name: str, **context: Any) -> HTMLResponse:
        context.setdefault("signed_in", api_token is not None)
        return HTMLResponse(_env.get_template(name).render(csrf=request.state.csrf, **context))

    # --- sign-in -------------------------------------------------------------------------------------------
    async def login_form(request: Request) -> Response:
        if api_token is None:
            return RedirectResponse("/", status_code=303)
        pre = access.new_cookie(False)
        response = HTMLResponse(
            _env.get_template("login.html").render(
                csrf=access.csrf(pre), error=None, next=request.query_params.get("next", "/"), signed_in=False
            )
        )
        _set_cookie(response, pre)
        return response

    async def login(request: Request) -> Response:
        if api_token is None:
            return RedirectResponse("/", status_code=303)
        form = await request.form()
        found = access.session(request)
        given = str(form.get("csrf") or "")
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        token_ok = hmac.compare_digest(str(form.get("token") or "").encode(), api_token.encode())
        if found is None or not hmac.compare_digest(given, access.csrf(found[0])) or not token_ok:
            security_event("console_login_failed", "wrong token or CSRF token", client=_client(request))
            pre = access.new_cookie(False)
            response = HTMLResponse(
                _env.get_template("login.html").render(
                    csrf=access.csrf(pre), error="Wrong token.", next=target, signed_in=False
                ),
                status_code=401,
            )
            _set_cookie(response, pre)
            return response
        security_event("console_login", "signed in to the console", client=_client(request))
        redirect = RedirectResponse(target, status_code=303)
        _set_cookie(redirect, access.new_cookie(True))
        return redirect

    async def logout(request: Request) -> Response:
        security_event("console_logout", "signed out", client=_client(request))
        response = RedirectResponse("/login" if api_token is not None else "/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # --- pages ---------------------------------------------------------------------------------------------
    async def overview(request: Request) -> Response:
        fleet = monitor.fleet_json(await monitor.snapshot())
        return render(request, "overview.html", fleet=fleet, rollouts=list(monitor.rollouts.by_id.values()))

    async def stations(request: Request) -> Response:
        query = request.query_params
        q = (query.get("q") or "").strip()[:128]
        state = query.get("state") or ""
        after = query.get("after") or None
        rows, next_after = await _search(store, q, state, after)
        context = {"rows": rows, "q": q, "state": state, "next_after": next_after, "after": after}
        if request.headers.get("hx-request"):
            return render(request, "_rows.html", **context)
        return render(request, "stations.html", **context)

    async def station(request: Request) -> Response:
        identity = request.path_params["identity"]
        state = await store.station_state(identity)
        if state is None:
            return render(request, "missing.html", identity=identity)
        connections = [
            e
            for e in await store.events(identity, limit=200)
            if e.kind in (EventKind.CONNECTED, EventKind.DISCONNECTED)
        ][:20]
        events = [
            e
            for e in await store.events(identity, limit=100)
            if e.kind not in (EventKind.CONNECTED, EventKind.DISCONNECTED)
        ][:30]
        site, reported = monitor.site(identity)
        day_text = request.query_params.get("day")
        try:
            day = dt.date.fromisoformat(day_text) if day_text else dt.datetime.now(site.timezone).date()
        except ValueError:
            day = dt.datetime.now(site.timezone).date()
        timeline = await _timeline(store, monitor, identity, day, site)
        frames = monitor.messages.entries(identity, limit=50)
        measurands = sorted(state.last_readings)
        return render(
            request,
            "station.html",
            s=state.station,
            state=state,
            connections=connections,
            events=events,
            frames=frames,
            timeline=timeline,
            day=day.isoformat(),
            site=site,
            site_reported=reported,
            measurands=measurands,
            commands=_FORMS,
            live=central.live is not None and central.live.get(identity) is not None,
        )

    async def meter_data(request: Request) -> Response:
        identity = request.path_params["identity"]
        since = time.time() - 7 * 86400
        rows = await store.meter_values(identity, since=since, limit=5000)
        series: dict[str, list[list[float]]] = {}
        for r in rows:
            if r.numeric is not None:
                key = r.measurand + (f" @{r.location}" if r.location else "")
                series.setdefault(key, []).append([r.timestamp, r.numeric])
        return JSONResponse({k: v[-1000:] for k, v in series.items()})

    async def command(request: Request) -> Response:
        identity = request.path_params["identity"]
        form = request.state.form
        action = str(form.get("action") or "")
        if action not in _FORMS:
            return render(request, "_answer.html", ok=False, title="Unknown action", body=action)
        try:
            payload = _payload(action, form)
        except ValueError as exc:
            return render(request, "_answer.html", ok=False, title="Invalid input", body=str(exc))
        security_event(
            "operator_action",
            f"console {action} to {identity}",
            who=request.state.who,
            identity=identity,
            action=action,
            payload=payload,
        )
        title, body, ok = await _send(central, identity, action, payload)
        return render(request, "_answer.html", ok=ok, title=title, body=body, action=action)

    async def rollouts(request: Request) -> Response:
        return render(request, "rollouts.html", rollouts=list(monitor.rollouts.by_id.values()), error=None)

    async def start_rollout(request: Request) -> Response:
        form = request.state.form
        error = None
        try:
            prefix = str(form.get("prefix") or "")
            explicit = [s.strip() for s in str(form.get("stations") or "").split(",") if s.strip()]
            targets = explicit or await _connected_with_prefix(store, prefix, monitor.rollouts.max_targets)
            rollout = monitor.rollouts.start(
                central,
                str(form.get("location") or ""),
                targets,
                wave_size=int(str(form.get("wave_size") or "10")),
                wave_interval=float(str(form.get("wave_interval") or "30")),
                who=request.state.who,
            )
            security_event(
                "operator_action",
                f"firmware rollout {rollout.id} to {len(rollout.targets)} stations",
                who=request.state.who,
                action="UpdateFirmware",
                location=rollout.location,
            )
        except (ValueError, RuntimeError) as exc:
            error = str(exc)
        return render(request, "rollouts.html", rollouts=list(monitor.rollouts.by_id.values()), error=error)

    async def events(request: Request) -> Response:
        identity = request.query_params.get("station") or None
        try:
            subscription = monitor.hub.subscribe(identity)
            receive = await subscription.__aenter__()
        except OverflowError:
            return JSONResponse({"error": "TooMany", "message": "too many live streams"}, status_code=503)

        async def stream() -> AsyncIterator[str]:
            monitor.metrics.sse_clients.inc()
            try:
                yield "retry: 3000\n\n"
                while True:
                    event = None
                    with trio.move_on_after(2.0):
                        event = await receive.receive()
                    if event is not None:
                        yield f"event: {event['kind']}\ndata: {json.dumps(event, default=str)}\n\n"
                    elif identity is None:
                        fleet = monitor.fleet_json(await monitor.snapshot())
                        yield f"event: fleet\ndata: {json.dumps(fleet)}\n\n"
                    else:
                        yield ": keepalive\n\n"
            finally:
                monitor.metrics.sse_clients.dec()
                with trio.CancelScope(shield=True):
                    await subscription.__aexit__(None, None, None)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    static = StaticFiles(packages=[("os3p_trio.central", "static")])
    return [
        Route("/", page(overview), methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", page(logout, state_changing=True), methods=["POST"]),
        Route("/stations", page(stations), methods=["GET"]),
        Route("/stations/{identity}", page(station), methods=["GET"]),
        Route("/stations/{identity}/meter.json", page(meter_data), methods=["GET"]),
        Route("/stations/{identity}/command", page(command, state_changing=True), methods=["POST"]),
        Route("/rollouts", page(rollouts), methods=["GET"]),
        Route("/rollouts", page(start_rollout, state_changing=True), methods=["POST"]),
        Route("/console/events", page(events), methods=["GET"]),
        Mount("/static", app=static, name="static"),
    ]


def _set_cookie(response: Response, value: str) -> None:
    response.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, httponly=True, samesite="strict", path="/")


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _matches(record: StationRecord, state: str) -> bool:
    if state == "connected":
        return record.connected
    if state == "disconnected":
        return not record.connected
    if state in ("Accepted", "Pending", "Rejected"):
        return record.boot_status is not None and record.boot_status.value == state
    if state == "never-booted":
        return record.boot_status is None
    return True


async def _search(
    store: Any, q: str, state: str, after: str | None
) -> tuple[list[StationRecord], str | None]:
    """One page of stations: identity prefix ``q``, ``state`` filter, after ``after`` (keyset paging).

    The prefix is a range of the identity order, so it is read from its start and stops at its end; a
    state filter the store cannot apply reads at most :data:`SCAN` stations per page."""
    connected = {"connected": True, "disconnected": False}.get(state)
    cursor = after
    if cursor is None and q:
        # The first identity >= q: everything after the largest string below q (q minus its last char,
        # then the last char decremented, then the maximum code point).
        cursor = q[:-1] + chr(ord(q[-1]) - 1) + "\U0010ffff" if ord(q[-1]) > 0 else q[:-1]
    rows: list[StationRecord] = []
    read = 0
    while len(rows) < PAGE and read < SCAN:
        batch = await store.list_stations(after=cursor, limit=PAGE * 4, connected=connected)
        if not batch:
            return rows, None
        for record in batch:
            read += 1
            cursor = record.identity
            if q and not record.identity.startswith(q):
                return rows, None
            if _matches(record, state):
                rows.append(record)
                if len(rows) >= PAGE:
                    return rows, record.identity
        if len(batch) < PAGE * 4:
            return rows, None
    return rows, cursor


async def _connected_with_prefix(store: Any, prefix: str, limit: int) -> list[str]:
    out: list[str] = []
    cursor: str | None = None
    while len(out) < limit:
        batch = await store.list_stations(after=cursor, limit=2000, connected=True)
        for r in batch:
            if r.identity.startswith(prefix):
                out.append(r.identity)
        if len(batch) < 2000:
            break
        cursor = batch[-1].identity
    return out[:limit]


async def _timeline(
    store: Any, monitor: Monitor, identity: str, day: dt.date, site: Any
) -> list[dict[str, Any]]:
    """Per contactor: the reported on/off periods of ``day`` and the effective schedule the core's engine
    computes from the profiles this Central System sent (and the station accepted) since start."""
    zone = site.timezone
    start = dt.datetime.combine(day, dt.time(12), zone).timestamp()  # OS³P day: noon to noon
    end = start + 86400
    switches = [
        e
        for e in await store.events(identity, kind=EventKind.STREETLIGHT_STATUS, limit=2000)
        if e.contactor_id is not None
    ]
    profiles = monitor.profiles.get(identity)
    out = []
    for contactor in (1, 2, 3, 4):
        own = sorted((e for e in switches if e.contactor_id == contactor), key=lambda e: e.timestamp)
        periods: list[tuple[float, float]] = []
        on_since: float | None = None
        for e in own:
            if e.timestamp >= end:
                break
            if e.status == "On" and on_since is None:
                on_since = e.timestamp
            elif e.status == "Off" and on_since is not None:
                if e.timestamp > start:
                    periods.append((max(on_since, start), e.timestamp))
                on_since = None
        if on_since is not None:
            periods.append((max(on_since, start), min(end, time.time())))
        schedule: list[tuple[float, float]] = []
        if profiles is not None:
            day_schedule = profiles.effective_day_schedule(contactor, day, site)
            schedule = [(s / 1000, e / 1000) for s, e in day_schedule.intervals]
        if not own and not schedule:
            continue

        def bars(spans: list[tuple[float, float]]) -> list[dict[str, Any]]:
            return [
                {
                    "left": round(100 * (max(a, start) - start) / 86400, 2),
                    "width": max(0.3, round(100 * (min(b, end) - max(a, start)) / 86400, 2)),
                    "label": f"{_hm(a, zone)}–{_hm(b, zone)}",
                }
                for a, b in spans
                if b > start and a < end
            ]

        out.append({"contactor": contactor, "reported": bars(periods), "schedule": bars(schedule)})
    return out


def _hm(t: float, zone: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(t, zone).strftime("%H:%M")


async def _send(
    central: CentralSystem, identity: str, action: str, payload: dict[str, Any]
) -> tuple[str, str, bool]:
    """Send a command; (title, body, ok) for the answer box."""
    try:
        result = await central.call(identity, action, payload, timeout=30)
    except SchemaViolation as exc:
        return (
            "Not sent: the payload fails its schema",
            f"{exc.code.value} at {exc.path}: {exc.description}",
            False,
        )
    except UnknownAction:
        return "Unknown action", action, False
    except UnknownStation:
        return "Unknown station", identity, False
    except NotConnected as exc:
        return "Not connected", str(exc) or identity, False
    except CallErrorReceived as exc:
        return (
            f"The station answered CALLERROR {exc.code}",
            f"{exc.description}\n{json.dumps(exc.details)}",
            False,
        )
    except CallTimeout as exc:
        return "No answer in time", str(exc), False
    except (InvalidResult, ConnectionClosed) as exc:
        return "The call failed", str(exc), False
    return f"{action}: the station answered", json.dumps(result, indent=2, ensure_ascii=False), True
