"""Firmware update and file upload: the two state machines that move files, as data and pure transitions.

Theory of operation
-------------------
Neither machine does I/O.  They emit *effects* (start a download, start an upload, reboot) and notifications;
the driver performs the HTTP transfer and feeds the outcome back with the effect's ``token``, so that the
result of an attempt superseded by a newer request is recognised and ignored.

Firmware (UpdateFirmware §M7.13, FirmwareStatusNotification §M6.3)::

    Idle ──UpdateFirmware──► Waiting ──retrieveDate──► Downloading ──ok──► Installing ──done──► (reboot) Idle
                               │                        │    ▲                   └─bad image─► Idle
                               (InstallationFailed) │                        fail │ retryInterval
                               │                        ▼    │
                               │                      RetryWait ──no attempts left──► Idle (DownloadFailed)

Every reported state is sent as FirmwareStatusNotification with the request's ``requestId`` when it had one:
``Downloading`` at every attempt, ``Downloaded``, ``Installing``, ``Installed`` or the failure.  ``retries``
is the number of download attempts (OCPP 1.6 UpdateFirmware: "how many times the Charge Point must try to
download the firmware before giving up"; absent → :attr:`TransferConfig.default_retries`), ``retryInterval``
the seconds between them.  A firmware image is text whose first line is ``OS3PSIM-FIRMWARE <version>``;
anything else fails installation.  A new UpdateFirmware supersedes one in progress (UpdateFirmware has no
status to refuse it).

GetFile (§M7.5, GetFileStatusNotification §M6.2)::

    Idle ──GetFile(http(s) location)──► Uploading ──ok──► Idle (Uploaded)
                                                 └─fail─► Idle (UploadFailed)

A GetFile while an upload is in progress, for an unsupported scheme (the simulator uploads over http and https
only) or for ``VendorSpecific`` files is answered ``Rejected``.  Outside an update or upload, the status for
TriggerMessage is ``None`` (§M4.1: "while no firmware update was ongoing, you will get None").
"""

from __future__ import annotations

import enum
from typing import Any
from urllib.parse import urlsplit

import attrs

__all__ = [
    "FIRMWARE_MAGIC",
    "FIRMWARE_TRANSITIONS",
    "Download",
    "Firmware",
    "FirmwarePhase",
    "Reboot",
    "TransferConfig",
    "Upload",
    "Uploads",
    "parse_firmware_image",
]

FIRMWARE_MAGIC = "OS3PSIM-FIRMWARE"


@attrs.frozen
class TransferConfig:
    """Defaults for transfers (documented, overridable per station)."""

    #: Download attempts when UpdateFirmware gives no ``retries``.
    default_retries: int = 3
    #: Seconds between attempts when UpdateFirmware gives no ``retryInterval``.
    default_retry_interval: float = 60.0
    #: Simulated installation time (s) between ``Installing`` and ``Installed`` + reboot.
    install_duration: float = 20.0
    #: Largest firmware image accepted (bytes); bigger is a failed download (bounds memory).
    max_image_size: int = 16 * 1024 * 1024
    #: Longest one HTTP attempt may take (s, in the driver's clock) before it counts as failed.
    attempt_timeout: float = 120.0


class FirmwarePhase(enum.StrEnum):
    """Where the firmware-update machine stands (see the diagram above)."""

    IDLE = "Idle"
    WAITING = "Waiting"
    DOWNLOADING = "Downloading"
    RETRY_WAIT = "RetryWait"
    INSTALLING = "Installing"


#: (phase, input) → next phase.  Inputs: "update", "timer", "download_ok", "download_failed",
#: "download_exhausted", "bad_image".  Missing pairs are impossible inputs and ignored.
FIRMWARE_TRANSITIONS: dict[tuple[FirmwarePhase, str], FirmwarePhase] = {
    **{(p, "update"): FirmwarePhase.WAITING for p in FirmwarePhase},
    (FirmwarePhase.WAITING, "timer"): FirmwarePhase.DOWNLOADING,
    (FirmwarePhase.DOWNLOADING, "download_ok"): FirmwarePhase.INSTALLING,
    (FirmwarePhase.DOWNLOADING, "bad_image"): FirmwarePhase.IDLE,
    (FirmwarePhase.DOWNLOADING, "download_failed"): FirmwarePhase.RETRY_WAIT,
    (FirmwarePhase.DOWNLOADING, "download_exhausted"): FirmwarePhase.IDLE,
    (FirmwarePhase.RETRY_WAIT, "timer"): FirmwarePhase.DOWNLOADING,
    (FirmwarePhase.INSTALLING, "timer"): FirmwarePhase.IDLE,
}

#: The FirmwareStatusNotification ``status`` a TriggerMessage reports in each phase (§M4.1).
FIRMWARE_REPORTED: dict[FirmwarePhase, str] = {
    FirmwarePhase.IDLE: "None",
    FirmwarePhase.WAITING: "None",
    FirmwarePhase.DOWNLOADING: "Downloading",
    FirmwarePhase.RETRY_WAIT: "Downloading",
    FirmwarePhase.INSTALLING: "Installing",
}


@attrs.frozen
class Download:
    """Effect: fetch ``location``; report back with ``token``."""

    token: int
    location: str
    attempt: int


@attrs.frozen
class Upload:
    """Effect: upload a file; report back with ``token``."""

    token: int
    location: str
    file_name: str
    file_type: str
    request_id: str | None
    start_time: str | None
    stop_time: str | None


@attrs.frozen
class Reboot:
    """Effect: reboot the station (new firmware, or a Reset)."""

    firmware_version: str | None = None


def parse_firmware_image(data: bytes) -> str | None:
    """The version in a simulator firmware image, or None when the image is not one."""
    first, _, _ = data[:256].partition(b"\n")
    try:
        text = first.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    magic, _, version = text.partition(" ")
    version = version.strip()
    if magic != FIRMWARE_MAGIC or not version or len(version) > 50:
        return None
    return version


def _notify(status: str, request_id: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"status": status}
    if request_id is not None:
        payload["requestId"] = request_id
    return payload


@attrs.frozen
class Firmware:
    """The firmware-update machine. ``timer_at`` is when :meth:`on_timer` must run next (None: no timer)."""

    phase: FirmwarePhase = FirmwarePhase.IDLE
    token: int = 0
    request_id: str | None = None
    location: str = ""
    attempts_left: int = 0
    attempt: int = 0
    retry_interval: float = 0.0
    timer_at: float | None = None
    new_version: str | None = None

    def _go(self, event: str, **changes: Any) -> Firmware:
        """The one funnel for phase changes: look the input up in the table."""
        nxt = FIRMWARE_TRANSITIONS[(self.phase, event)]
        return attrs.evolve(self, phase=nxt, **changes)

    def reported_status(self) -> dict[str, Any]:
        return _notify(FIRMWARE_REPORTED[self.phase], self.request_id)

    def update(self, request: dict[str, Any], retrieve_at: float, now: float, config: TransferConfig
               ) -> Firmware:
        """UpdateFirmware accepted: wait for ``retrieveDate`` (immediately if it is in the past)."""
        retries = request.get("retries")
        interval = request.get("retryInterval")
        return self._go("update", token=self.token + 1, request_id=request.get("requestId"),
                        location=str(request["location"]),
                        attempts_left=max(1, int(retries)) if retries is not None else config.default_retries,
                        attempt=0,
                        retry_interval=float(max(0, int(interval))) if interval is not None
                        else config.default_retry_interval,
                        timer_at=max(retrieve_at, now), new_version=None)

    def on_timer(self, now: float, config: TransferConfig
                 ) -> tuple[Firmware, list[dict[str, Any]], list[Download | Reboot]]:
        """The timer fired: start an attempt, or finish installing."""
        if self.timer_at is None or now < self.timer_at:
            return self, [], []
        if self.phase in (FirmwarePhase.WAITING, FirmwarePhase.RETRY_WAIT):
            state = self._go("timer", timer_at=None, attempt=self.attempt + 1,
                             attempts_left=self.attempts_left - 1)
            return (state, [_notify("Downloading", self.request_id)],
                    [Download(state.token, state.location, state.attempt)])
        if self.phase is FirmwarePhase.INSTALLING:
            state = self._go("timer", timer_at=None)
            return (attrs.evolve(state, request_id=None), [_notify("Installed", self.request_id)],
                    [Reboot(self.new_version)])
        return attrs.evolve(self, timer_at=None), [], []

    def download_finished(self, token: int, data: bytes | None, now: float, config: TransferConfig
                          ) -> tuple[Firmware, list[dict[str, Any]]]:
        """The driver's download outcome: ``data`` None means the attempt failed."""
        if token != self.token or self.phase is not FirmwarePhase.DOWNLOADING:
            return self, []  # a superseded attempt
        if data is None or len(data) > config.max_image_size:
            if self.attempts_left > 0:
                return self._go("download_failed", timer_at=now + self.retry_interval), []
            return (attrs.evolve(self._go("download_exhausted"), request_id=None),
                    [_notify("DownloadFailed", self.request_id)])
        version = parse_firmware_image(data)
        if version is None:
            return (attrs.evolve(self._go("bad_image"), request_id=None),
                    [_notify("Downloaded", self.request_id), _notify("Installing", self.request_id),
                     _notify("InstallationFailed", self.request_id)])
        state = self._go("download_ok", new_version=version, timer_at=now + config.install_duration)
        return state, [_notify("Downloaded", self.request_id), _notify("Installing", self.request_id)]

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["phase"] = self.phase.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Firmware:
        return cls(**{**data, "phase": FirmwarePhase(data["phase"])})


def upload_file_name(identity: str, request: dict[str, Any], now_compact: str) -> str:
    """The ``fileName`` of the GetFile response."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in identity)
    if request["fileType"] == "MeterValueHistory":
        start = _compact(request.get("startTime")) or "begin"
        stop = _compact(request.get("stopTime")) or now_compact
        return f"MeterValueHistory-{safe}-{start}-{stop}.csv"
    return f"Syslog-{safe}-{now_compact}.log"


def _compact(iso: str | None) -> str:
    if not iso:
        return ""
    return "".join(ch for ch in iso[:19] if ch.isdigit())


@attrs.frozen
class Uploads:
    """The GetFile machine: at most one upload at a time."""

    token: int = 0
    active: Upload | None = None

    def reported_status(self) -> dict[str, Any]:
        if self.active is None:
            return {"status": "None"}
        return _notify("Uploading", self.active.request_id)

    def get_file(self, identity: str, request: dict[str, Any], now_compact: str
                 ) -> tuple[dict[str, Any], Uploads, list[dict[str, Any]], list[Upload]]:
        """GetFile (§M7.5): the response, the new state, notifications and the upload effect."""
        scheme = urlsplit(str(request["location"])).scheme.lower()
        unsupported = scheme not in ("http", "https") or request["fileType"] == "VendorSpecific"
        if self.active is not None or unsupported:
            return {"status": "Rejected", "fileName": ""}, self, [], []
        name = upload_file_name(identity, request, now_compact)
        upload = Upload(self.token + 1, str(request["location"]), name, str(request["fileType"]),
                        request.get("requestId"), request.get("startTime"), request.get("stopTime"))
        state = Uploads(token=upload.token, active=upload)
        return ({"status": "Accepted", "fileName": name}, state, [_notify("Uploading", upload.request_id)],
                [upload])

    def upload_finished(self, token: int, ok: bool) -> tuple[Uploads, list[dict[str, Any]]]:
        if self.active is None or token != self.active.token:
            return self, []
        status = "Uploaded" if ok else "UploadFailed"
        return Uploads(token=self.token), [_notify(status, self.active.request_id)]
