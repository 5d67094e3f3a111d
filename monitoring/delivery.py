"""Deliver a message to a notification URL through Apprise: guard, compose for the service, send once.

`deliver` makes exactly one attempt and says what happened in a `DeliveryOutcome`; retries,
backoff and the delivery log belong to the caller. The URL is checked and parsed by
`monitoring.notification_urls`, its destination by `monitoring.guard`, and Apprise's log lines
are masked while it sends (`monitoring.masking`).

What each service receives
--------------------------
- JSON webhooks (`json://`, `jsons://`) get Apprise's JSON envelope with the payload added as a
  nested object under `newswatch` (through the plugin's payload extras, the mechanism behind the
  `:key=value` URL arguments), so a receiver reads `body["newswatch"]["alert_id"]`::

      POST /hook HTTP/1.1
      Content-Type: application/json
      User-Agent: newswatch

      {"version": "1.0",
       "title": "newswatch · Storms: Storm hits the coast (5 articles, 3 sources)",
       "message": "New story for watch Storms ...",            # the plain-text form
       "attachments": [],
       "type": "info",
       "newswatch": {"alert_id": "a1b2c3", "kind": "new", "watch": {...}, "story": {...},
                     "articles": [...], "created_at": "..."}}

  The URL's own `:key=value` arguments still rename or drop envelope fields (`:message=text`),
  but `newswatch` always holds the payload. A digest (`monitoring.digest.digest_message`) arrives the
  same way with `"newswatch": {"kind": "digest", ...the digest...}`.
- E-mail (`mailto://`, `mailtos://`) gets the HTML form as a multipart/alternative message; its
  text/plain part is Apprise's conversion of that HTML (Apprise builds it and it cannot be
  supplied; links keep only their text there). The subject is the title.
- Slack gets the HTML form, which Apprise translates into Slack's own `mrkdwn` dialect (CommonMark
  given directly would reach Slack untranslated, with its backslash escapes showing).
- Other Markdown services (Teams `workflows://`, Discord, ntfy or Telegram with `format=markdown`,
  ...) get the Markdown form. Discord renders Markdown even in its default text mode, so it gets
  Markdown too. Where a service would paste the title unescaped into a Markdown body (no title field
  of its own, or Discord's text mode), the title is put into the body escaped instead.
- Services that take HTML but are not e-mail (Telegram by default) get the text form, which Apprise
  escapes into HTML; text services get the text form.

One attempt, bounded in time
----------------------------
Every attempt gets a fresh plugin from Apprise, adjusted after parsing so the URL cannot undo it:
`retry=0` (Apprise's own retry loop off: retries are the caller's, on later runs), `optional=no`
(an optional service would report a failure as success), redirects off (a redirect would bypass
the SSRF guard and forward credentials), emoji codes off, and the connect and read timeouts
(`cto`/`rto`, used by Apprise's HTTP requests and as the SMTP socket timeout) both set to
`timeout`. The guard's DNS lookup is given `timeout` too. A stalled endpoint therefore costs about
`timeout` seconds; each phase (resolving, connecting, each wait for bytes) is bounded by it, so a
server dripping bytes slowly can take longer. Apprise sends in the calling thread
(`async_mode=False`), so `deliver_all` runs several attempts at once on its own threads.

Logging: Apprise logs through the `apprise` logger (and HTTP through `urllib3`). During an attempt,
a filter on those loggers rewrites every record from the attempt's thread with the URL's secrets
replaced by `****` (exception tracebacks folded into one masked line), at every level, so no
handler ever sees them; the last WARNING-or-worse line becomes `DeliveryOutcome.error`.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import apprise
from apprise import NotifyBase, NotifyFormat, NotifyType

from monitoring.guard import check_destinations
from monitoring.markup import escape_markdown
from monitoring.masking import captured, hide
from monitoring.alerts import AlertMessage
from monitoring.notification_urls import APPRISE_ASSET, NotifyError, load_plugin, mask_url, secrets_of

logger = logging.getLogger(__name__)

# Plugins that send plain HTTP to the URL host and let us pin the checked address.
_PINNABLE_PLUGINS = ("NotifyJSON", "NotifyXML", "NotifyForm")


@dataclass(frozen=True)
class DeliveryOutcome:
    """The result of one delivery attempt."""

    ok: bool
    error: str | None = None  # one line, no secrets; None when ok


def _compose(plugin: NotifyBase, message: AlertMessage) -> tuple[str, str, NotifyFormat]:
    """The (title, body, body format) to hand Apprise for this service (see the module docstring)."""
    name, service_format = type(plugin).__name__, plugin.notify_format
    if name == "NotifyEmail":
        return message.title, message.html, NotifyFormat.HTML
    if name == "NotifySlack" and service_format == NotifyFormat.MARKDOWN:
        return message.title, message.html, NotifyFormat.HTML  # Apprise translates HTML to mrkdwn
    if service_format == NotifyFormat.MARKDOWN or name == "NotifyDiscord":
        # Apprise would prepend the title unescaped where the service has no title field, and
        # Discord's text mode pastes it into the rendered content: put it in escaped instead.
        if plugin.title_maxlen <= 0 or service_format != NotifyFormat.MARKDOWN:
            return "", f"**{escape_markdown(message.title)}**\n\n{message.markdown}", NotifyFormat.MARKDOWN
        return message.title, message.markdown, NotifyFormat.MARKDOWN
    # HTML services other than e-mail (Telegram accepts only a few tags) and text services: the
    # text form, which Apprise escapes itself when the service wants HTML.
    return message.title, message.text, NotifyFormat.TEXT


def _prepare(plugin: NotifyBase, message: AlertMessage, checked: dict[str, str], timeout: float) -> None:
    """Fix the attempt's settings on the plugin, whatever its URL said."""
    plugin.retry = 0
    plugin.optional = False
    plugin.redirects = False
    plugin.socket_connect_timeout = plugin.socket_read_timeout = float(timeout)
    plugin.interpret_emojis = False
    name = type(plugin).__name__
    if name == "NotifyJSON":
        plugin.payload_extras["newswatch"] = message.payload
    host = (plugin.host or "").strip("[]")
    if name in _PINNABLE_PLUGINS and not plugin.secure and host in checked:
        # Connect to the address we checked, not to whatever a second lookup returns.
        address = checked[host]
        headers = {key.lower(): key for key in plugin.headers}
        if "host" not in headers:
            plugin.headers["Host"] = host if plugin.port is None else f"{host}:{plugin.port}"
        plugin.host = f"[{address}]" if ":" in address else address


def deliver(url: str, message: AlertMessage, *, allow_private_networks: bool = False,
            timeout: float = 10.0) -> DeliveryOutcome:
    """Send one message to one notification URL, once.

    Args:
        url: An Apprise URL.
        message: The message, usually from `monitoring.alerts.render_alert` or
            `monitoring.digest.digest_message`.
        allow_private_networks: Let the SSRF guard pass loopback and private destinations.
        timeout: Seconds allowed for resolving the host (where the guard does), for connecting and
            for each wait for the server's answer.

    Returns:
        `DeliveryOutcome(ok=True)` when the service accepted the message; otherwise ok=False and
        a one-line `error` without secrets (an invalid URL, a refused destination, or the last
        warning Apprise logged, e.g. an HTTP status or a connection error). Never raises for
        delivery failures.
    """
    text = url.strip() if isinstance(url, str) else ""
    try:
        plugin = load_plugin(text)
        checked = check_destinations(plugin, allow_private_networks, timeout)
    except NotifyError as exc:
        return DeliveryOutcome(False, str(exc))
    secrets = secrets_of(text, plugin)
    with captured(secrets) as capture:
        _prepare(plugin, message, checked, timeout)
        title, body, body_format = _compose(plugin, message)
        notifier = apprise.Apprise(asset=APPRISE_ASSET)
        notifier.add(plugin)
        started = time.monotonic()
        try:
            delivered = notifier.notify(body=body, title=title, body_format=body_format,
                                        notify_type=NotifyType.INFO)
        except Exception as exc:  # a plugin bug must not stop the other deliveries of a run
            logger.warning("delivery to %s raised %s", mask_url(text), type(exc).__name__)
            return DeliveryOutcome(False, f"{plugin.service_name}: unexpected {type(exc).__name__}")
    if delivered:
        return DeliveryOutcome(True, None)
    error = hide(capture.last_error or f"{plugin.service_name} notification failed", secrets)
    elapsed = time.monotonic() - started
    if elapsed >= 0.9 * timeout:
        # Apprise logs the cause of a connection error (e.g. a read timeout) only at DEBUG level.
        error = f"{error.rstrip('.')} (gave up after {elapsed:.1f} s; timeout {timeout:g} s)"
    logger.info("delivery to %s failed: %s", mask_url(text), error)
    return DeliveryOutcome(False, error)


def deliver_all(deliveries: list[tuple[str, AlertMessage]], *, allow_private_networks: bool = False,
                timeout: float = 10.0, concurrency: int = 4) -> list[DeliveryOutcome]:
    """Deliver several messages at once, each with one attempt.

    Args:
        deliveries: (URL, message) pairs.
        allow_private_networks: As for `deliver`.
        timeout: As for `deliver`, per attempt.
        concurrency: Attempts running at the same time (threads); a slow endpoint holds up only
            its own thread.

    Returns:
        One `DeliveryOutcome` per pair, in input order.
    """
    if not deliveries:
        return []
    # Load Apprise's plugin table once, before threads would race to do it.
    apprise.NotificationManager().schemas()
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(deliveries))),
                            thread_name_prefix="newswatch-notify") as pool:
        futures = [pool.submit(deliver, url, message, allow_private_networks=allow_private_networks,
                               timeout=timeout) for url, message in deliveries]
        return [future.result() for future in futures]
