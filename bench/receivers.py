"""Real notification receivers on 127.0.0.1 for benchmarks and tests: a webhook endpoint and an SMTP server.

Tests get them as pytest fixtures from `tests/receivers.py`::

    from tests.receivers import make_smtp_fixture, make_webhook_fixture

    webhook = make_webhook_fixture()
    smtp = make_smtp_fixture()

    def test_something(webhook, smtp):
        deliver(webhook.json_url("/hook"), message, allow_private_networks=True)
        assert webhook.received[0].json()["newswatch"]["alert_id"] == "a1"
        deliver(smtp.mailto_url(), message, allow_private_networks=True)
        assert smtp.messages[0]["Subject"]

Both listen on an ephemeral port and record everything they receive; nothing leaves the machine.
"""

import email
import email.message
import email.policy
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from aiosmtpd.controller import Controller

from bench.http_server import LocalServer, respond


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the webhook receiver read it, before it answered."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names
    body: bytes
    received_at: float  # time.monotonic() when the body had been read

    def json(self):
        """The body decoded as JSON."""
        return json.loads(self.body.decode("utf-8"))


class WebhookReceiver:
    """An HTTP endpoint that records every request and answers 200, or fails or stalls on demand.

    Built on `bench.http_server.LocalServer` (one catch-all route). `fail_next` and `stall_next`
    queue behaviours for the next requests, in order; a request with nothing queued gets 200.
    """

    def __init__(self) -> None:
        self._server = LocalServer()
        self._server.route("*", self._handle)
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._plans: list[tuple[str, float]] = []  # ("fail", status) or ("stall", seconds)
        self._arrived = threading.Condition(self._lock)
        self.port = self._server.port

    @property
    def url(self) -> str:
        """The http:// base URL of the receiver."""
        return self._server.base_url

    def json_url(self, path: str = "/hook", query: str = "") -> str:
        """The Apprise `json://` URL that posts to `path` here (`query` without the `?`)."""
        return f"json://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every request received so far, in arrival order (stalled ones included)."""
        with self._lock:
            return list(self._received)

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """Answer the next `count` requests with `status`."""
        with self._lock:
            self._plans.extend([("fail", float(status))] * count)

    def stall_next(self, seconds: float) -> None:
        """Wait `seconds` before answering the next request (200 if the client is still there)."""
        with self._lock:
            self._plans.append(("stall", float(seconds)))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until `count` requests have arrived (or `timeout` passed); returns them all."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._received) < count and time.monotonic() < deadline:
                self._arrived.wait(max(0.0, deadline - time.monotonic()))
            return list(self._received)

    def start(self) -> "WebhookReceiver":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        recorded = ReceivedRequest(request.command, request.path,
                                   {name.lower(): value for name, value in request.headers.items()},
                                   body, time.monotonic())
        with self._arrived:
            self._received.append(recorded)
            plan = self._plans.pop(0) if self._plans else ("ok", 0.0)
            self._arrived.notify_all()
        if plan[0] == "stall":
            # Wake early when the server stops, so a test never waits for a stall to run out.
            self._server.stopping.wait(plan[1])
        status = int(plan[1]) if plan[0] == "fail" else 200
        respond(request, status, json.dumps({"ok": status == 200}).encode(), "application/json")


class _RecordingHandler:
    """aiosmtpd handler that parses and keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []  # (MAIL FROM, RCPT TO) per message
        self.lock = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content or envelope.content,
                                          policy=email.policy.default)
        with self.lock:
            self.messages.append(parsed)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.lock.notify_all()
        return "250 Message accepted for delivery"


class _EphemeralController(Controller):
    """An aiosmtpd Controller bound to port 0, learning its real port before the readiness check."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpReceiver:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that records every message, without TLS or auth."""

    def __init__(self) -> None:
        self._handler = _RecordingHandler()
        # A fixed server name: the default, socket.getfqdn(), may ask DNS.
        self._controller = _EphemeralController(self._handler, hostname="127.0.0.1", port=0,
                                                server_hostname="smtp.localhost")
        self.port: int | None = None

    def mailto_url(self, sender: str = "newswatch@example.com", to: str = "reader@example.com") -> str:
        """The Apprise `mailto://` URL that sends here: plain SMTP, no login, explicit from and to."""
        return f"mailto://127.0.0.1:{self.port}?from={sender}&to={to}"

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        """Every message received so far, parsed with the `email` package's modern policy."""
        with self._handler.lock:
            return list(self._handler.messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        """(MAIL FROM, RCPT TO) of every message received so far."""
        with self._handler.lock:
            return list(self._handler.envelopes)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[email.message.EmailMessage]:
        """Block until `count` messages have arrived (or `timeout` passed); returns them all."""
        deadline = time.monotonic() + timeout
        with self._handler.lock:
            while len(self._handler.messages) < count and time.monotonic() < deadline:
                self._handler.lock.wait(max(0.0, deadline - time.monotonic()))
            return list(self._handler.messages)

    def start(self) -> "SmtpReceiver":
        self._controller.start()
        self.port = self._controller.port
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> "SmtpReceiver":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
