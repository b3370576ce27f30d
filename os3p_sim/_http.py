"""HTTP transfers for UpdateFirmware and GetFile, on trio (httpx runs on trio through anyio).

The station model decides *what* to transfer and when (``Download`` / ``Upload`` effects, retries per
UpdateFirmware ``retries`` / ``retryInterval``); this module only moves bytes.  Each function makes one
attempt and raises :class:`TransferError` on any failure; the caller bounds it with a cancel scope (trio
idiom: no timeout parameters).

* Download: ``GET location``; any 2xx is the image.  The body is read in chunks and abandoned beyond
  ``max_size`` bytes (bounded memory).
* Upload: ``PUT <location>/<fileName>`` with the file as the raw body (``fileName`` is what the GetFile
  response announced, percent-encoded as one path segment).  The Central System's ``location`` is thus a
  directory-like URL — e.g. ``http://cs.example/files/<identity>``, which is where ``os3p_trio.central``
  receives uploads.  Any 2xx is success.

https: the server's certificate is verified against ``ssl_context`` when one is given (e.g. a context that
trusts a private CA: ``ssl.create_default_context(cafile="ca.pem")``), else against the system's CA store
(httpx's default).  A certificate that does not verify fails the attempt like any network error: the firmware
machine retries and ends with ``DownloadFailed``, an upload ends with ``UploadFailed``.  When the caller
passes its own ``client`` (a fleet shares one), the client's ``verify`` setting applies instead.

Only ``http`` and ``https`` are supported (the spec's examples use ``ftp``; the model answers GetFile with
``Rejected`` for other schemes, and a firmware download from one fails with ``DownloadFailed``).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from urllib.parse import quote, urlsplit

import httpx
import trio

from ._station import Output, Station, log_text, meter_history_csv, parse_time
from ._store import StationStore
from ._transfers import Download, Upload

__all__ = ["TransferError", "download", "perform_transfer", "transfer_client", "upload"]


class TransferError(Exception):
    """One transfer attempt failed (network, HTTP status, size, or scheme)."""


def _reason(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, with the first cause that says something: httpx on trio wraps e.g. an
    ``ssl.SSLCertVerificationError`` in a ``ConnectError`` with an empty message."""
    parts = [f"{type(exc).__name__}: {exc}".rstrip(": ")]
    cause = exc.__cause__ or exc.__context__
    for _ in range(5):  # bounded walk down the chain
        if cause is None:
            break
        if str(cause):
            parts.append(f"{type(cause).__name__}: {cause}")
            break
        cause = cause.__cause__ or cause.__context__
    return " <- ".join(parts)


def _check_scheme(location: str) -> None:
    if urlsplit(location).scheme.lower() not in ("http", "https"):
        raise TransferError(f"unsupported scheme in {location!r}: only http and https")


def transfer_client(ssl_context: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    """The HTTP client transfers use: no timeout of its own (the caller's cancel scope bounds an attempt),
    redirects followed, https verified against ``ssl_context`` (None: the system's CA store)."""
    return httpx.AsyncClient(timeout=None, follow_redirects=True,
                             verify=ssl_context if ssl_context is not None else True)


async def download(location: str, *, max_size: int, client: httpx.AsyncClient | None = None,
                   ssl_context: ssl.SSLContext | None = None) -> bytes:
    """Fetch ``location``; at most ``max_size`` bytes.  ``ssl_context`` applies without ``client``."""
    _check_scheme(location)
    own = client is None
    http = client or transfer_client(ssl_context)
    try:
        async with http.stream("GET", location) as response:
            if not response.is_success:
                raise TransferError(f"GET {location}: HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_size:
                    raise TransferError(f"GET {location}: more than {max_size} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise TransferError(f"GET {location}: {_reason(exc)}") from exc
    finally:
        if own:
            await http.aclose()


async def upload(location: str, file_name: str, content: bytes, *, content_type: str = "text/plain",
                 client: httpx.AsyncClient | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
    """PUT ``content`` to ``<location>/<file_name>``.  ``ssl_context`` applies without ``client``."""
    _check_scheme(location)
    target = location.rstrip("/") + "/" + quote(file_name, safe="")
    own = client is None
    http = client or transfer_client(ssl_context)
    try:
        response = await http.put(target, content=content, headers={"content-type": content_type})
        if not response.is_success:
            raise TransferError(f"PUT {target}: HTTP {response.status_code}")
    except httpx.HTTPError as exc:
        raise TransferError(f"PUT {target}: {_reason(exc)}") from exc
    finally:
        if own:
            await http.aclose()


async def perform_transfer(station: Station, effect: Download | Upload, store: StationStore,
                           now: Callable[[], float], *, client: httpx.AsyncClient | None = None,
                           ssl_context: ssl.SSLContext | None = None) -> Output:
    """Carry out one transfer effect of ``station`` over HTTP and feed the outcome back into the model.

    https is verified with ``client``'s settings, else against ``ssl_context``, else the system's CA store.
    The attempt is bounded by ``station.config.transfers.attempt_timeout`` (a cancel scope); running out of
    time is a failed attempt like any other.  Upload content comes from the durable store: the meter history
    between ``startTime`` and ``stopTime`` as CSV, or the station's log.
    """
    limit = station.config.transfers.attempt_timeout
    if isinstance(effect, Download):
        data: bytes | None = None
        with trio.move_on_after(limit):
            try:
                data = await download(effect.location, max_size=station.config.transfers.max_image_size,
                                      client=client, ssl_context=ssl_context)
            except TransferError:
                data = None
        return station.download_finished(effect.token, data, now())
    tz = station.configuration.timezone
    if effect.file_type == "MeterValueHistory":
        start = parse_time(effect.start_time, tz) if effect.start_time else None
        stop = parse_time(effect.stop_time, tz) if effect.stop_time else None
        content = meter_history_csv(store.meter_history(station.identity, start, stop))
        content_type = "text/csv"
    else:
        content = log_text(store.log_lines(station.identity))
        content_type = "text/plain"
    ok = False
    with trio.move_on_after(limit):
        try:
            await upload(effect.location, effect.file_name, content, content_type=content_type, client=client,
                         ssl_context=ssl_context)
            ok = True
        except TransferError:
            ok = False
    return station.upload_finished(effect.token, ok, now())
