"""The SSRF guard of notification URLs: a destination must be public unless private networks are allowed.

`guard_url` refuses destinations that resolve to loopback, private, link-local, metadata or other
non-public addresses (`extract.fetch.describe_address`; every DNS answer must be public) unless
`allow_private_networks` (`NEWSWATCH_ALLOW_PRIVATE_NETWORKS=1`). The destination is read from the
plugin Apprise builds, not guessed from the URL text:

- e-mail: the SMTP server (`smtp=`, else the URL host; known providers map to their public server);
- Zulip: `<organization>.<hostname>` (a full host name may be given as the organization);
- every plugin whose URL template has a `{host}` token (json, xml, form, ntfy in private mode,
  gotify, Matrix, Mattermost, Rocket.Chat, Home Assistant, Apprise API, MQTT, Nextcloud, Teams
  workflows, ...): the URL host, except the mail APIs whose host token is only the sender's domain
  (Mailgun, SparkPost, SMTP2Go, SendPulse), WeChat (its host is a corporate id), and plugins in a
  mode that posts to the vendor's hosted service (ntfy.sh for `ntfy://topic`, LaMetric cloud,
  Notica and Notifico official, Matrix t2bot) or given no host at all (PushDeer's default server);
- nothing for services that always connect to their own public API (Slack, Discord, Telegram, ...).

For plain-HTTP custom webhooks (json, xml, form) the request is then sent to the checked address
with the original Host header, so a second DNS answer cannot redirect it (DNS rebinding). Other
services resolve again when they connect: over TLS the certificate check stops a rebound
connection; over plain connections (`mailto://` without TLS, `gotify://`, `ntfy://` to a custom
host, ...) a rebinding window remains. Proxies configured in the environment are used by Apprise's
HTTP client; the guard checks the destination, not the proxy.
"""

import socket
import threading
from typing import Any

from apprise import NotifyBase

from extract.fetch import describe_address
from monitoring.notification_urls import NotifyError, destinations, load_plugin


class DeliveryRefused(NotifyError):
    """A valid notification URL whose destination is off limits (the SSRF guard)."""


def _resolve(host: str, port: int | None) -> list[str]:
    """Every address `host` resolves to (a seam for tests, which must not use real DNS)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)]


def _resolve_within(host: str, port: int | None, timeout: float) -> list[str]:
    """`_resolve` with a time limit: the system resolver has none of its own that we control."""
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["addresses"] = _resolve(host, port)
        except Exception as exc:  # handed to the caller below
            outcome["error"] = exc

    # A daemon thread, so a resolver that never answers cannot keep the process alive.
    worker = threading.Thread(target=lookup, name="newswatch-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise DeliveryRefused(f"refused: cannot resolve {host} (no answer within {timeout:g} s)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["addresses"]


def check_destinations(plugin: NotifyBase, allow_private_networks: bool, timeout: float) -> dict[str, str]:
    """Refuse non-public destinations; returns {host: checked address} for the hosts resolved."""
    checked: dict[str, str] = {}
    for host, port in destinations(plugin):
        host = host.strip().strip("[]")
        if not host:
            raise NotifyError("the notification URL has no host")  # e.g. mailto:// without a server
        if allow_private_networks:
            continue
        try:
            addresses = _resolve_within(host, port, timeout)
        except (OSError, UnicodeError) as exc:
            raise DeliveryRefused(f"refused: cannot resolve {host} ({exc.strerror or exc})") from None
        # Refuse if ANY answer is private: the connecting code could pick any of them.
        reasons = [reason for reason in map(describe_address, addresses) if reason]
        if reasons or not addresses:
            raise DeliveryRefused(f"refused: {reasons[0] if reasons else host + ' has no address'} "
                                  "(set NEWSWATCH_ALLOW_PRIVATE_NETWORKS=1 to allow private networks)")
        checked[host] = addresses[0]
    return checked


def guard_url(url: str, *, allow_private_networks: bool, timeout: float = 10.0) -> None:
    """Refuse a notification URL whose network destination is not public (the SSRF guard).

    Args:
        url: An Apprise URL.
        allow_private_networks: Allow loopback, private, link-local and metadata destinations
            (`NEWSWATCH_ALLOW_PRIVATE_NETWORKS=1`, for tests and intranets); nothing is resolved then.
        timeout: Seconds to wait for the DNS answers.

    Raises:
        NotifyError: For a URL that `check_url` rejects.
        DeliveryRefused: When any address the destination host resolves to is not public, or the
            host does not resolve. Services with a fixed public API host (Slack, Discord,
            Telegram, ...) always pass; the module docstring lists what is checked.
    """
    check_destinations(load_plugin(url), allow_private_networks, timeout)
