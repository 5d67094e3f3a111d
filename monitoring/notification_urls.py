"""Notification URLs: Apprise URLs parsed into plugins, checked, shown masked, and where they connect.

A watch's notification URLs are Apprise URLs (`json://`, `jsons://`, `mailto://`, `mailtos://`,
`slack://`, `discord://`, `workflows://` for Microsoft Teams, `ntfy://`, `tgram://`, ...; see
https://github.com/caronc/apprise/wiki). `check_url` validates one without sending anything,
`mask_url` shows one with every secret hidden (`monitoring.masking`), `destinations` says which
hosts its plugin would connect to (what `monitoring.guard` checks). Every parse runs with the
URL's secrets masked in Apprise's log lines.
"""

from urllib.parse import quote, unquote

import apprise
from apprise import NotifyBase

from monitoring.masking import MASK, PUBLIC_ARGUMENTS, captured, hide, query_arguments, url_scheme, url_secrets

APPRISE_WIKI = "https://github.com/caronc/apprise/wiki"

# Apprise's parsing is the same for every attempt; the asset only carries defaults.
APPRISE_ASSET = apprise.AppriseAsset(
    app_id="newswatch",
    app_desc="newswatch news monitoring",
    app_url="https://github.com/newswatch",
    async_mode=False,  # send in the calling thread: deliver_all owns concurrency, logs stay per thread
    default_service_retry=0,
    http_redirects=False,
    interpret_emojis=False,  # ":fire:" in a feed title stays text; URLs cannot turn this back on
    secure_logging=True,
)

# Mail APIs whose {host} token is the sender's domain, and WeChat's corporate id: not destinations.
_HOST_IS_NOT_DESTINATION = frozenset({"mailgun", "sparkpost", "smtp2go", "sendpulse", "wechat"})
# Plugin modes that post to the vendor's hosted service whatever the URL's host part holds:
# ntfy.sh and LaMetric's cloud ("cloud"), Notica and Notifico ("official"), Matrix's t2bot.io.
_HOSTED_MODES = frozenset({"cloud", "official", "t2bot"})
_RETIRED_SCHEMES = {
    "msteams": "msteams:// is no longer supported by Apprise (Microsoft retired Office 365 "
               "connectors); use a Teams Workflows URL (workflows://...) instead",
}


class NotifyError(ValueError):
    """A notification URL that cannot be used; the message is one sentence for the user."""


def _plugin_secrets(plugin: NotifyBase) -> list[str]:
    """Values of the plugin's tokens that Apprise itself marks private (tokens, keys, passwords)."""
    values: list[str] = []
    for name, spec in type(plugin).template_tokens.items():
        if not spec.get("private"):
            continue
        value = getattr(plugin, spec.get("map_to", name), None)
        for item in value if isinstance(value, (list, tuple, set)) else [value]:
            if isinstance(item, str) and item:
                values.append(item)
    values += [value for value in (getattr(plugin, "password", None),) if isinstance(value, str) and value]
    for mapping in ("headers", "params", "payload_extras"):  # +Header=, -param=, :key= arguments
        values += [str(value) for value in (getattr(plugin, mapping, None) or {}).values() if value]
    if not destinations(plugin) and isinstance(plugin.host, str) and plugin.host:
        values.append(plugin.host)  # a fixed-host service's "host" is a token (slack://T0001/...)
    return values


def secrets_of(url: str, plugin: NotifyBase | None) -> list[str]:
    """Every secret of a URL, longest first so a secret inside another is not half-replaced."""
    found = url_secrets(url) + (_plugin_secrets(plugin) if plugin is not None else [])
    decoded = [unquote(value) for value in found]
    # Very short values (a one-letter path, "1") would mask unrelated text and protect nothing.
    return sorted({value for value in found + decoded if len(value) >= 3}, key=len, reverse=True)


def _instantiate(url: str) -> NotifyBase | None:
    """Apprise's plugin for the URL, or None; its log lines are masked."""
    with captured(url_secrets(url)):
        return apprise.Apprise.instantiate(url, asset=APPRISE_ASSET)


def load_plugin(url: str) -> NotifyBase:
    """The plugin for a URL, or NotifyError saying in one sentence why there is none."""
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise NotifyError("the notification URL is empty")
    scheme = url_scheme(text)
    with captured(url_secrets(text)) as capture:
        plugin = apprise.Apprise.instantiate(text, asset=APPRISE_ASSET)
    if plugin is not None:
        return plugin
    if not scheme:
        raise NotifyError(f"not a notification URL (expected scheme://..., see {APPRISE_WIKI}): "
                          f"{mask_url(text)}")
    if scheme in _RETIRED_SCHEMES:
        raise NotifyError(_RETIRED_SCHEMES[scheme])
    manager = apprise.NotificationManager()
    if scheme in ("http", "https"):
        raise NotifyError(f"no notification service recognises this {scheme}:// URL; for a generic "
                          f"webhook use json:// or jsons:// ({mask_url(text)})")
    if scheme not in manager.schemas(include_disabled=True):
        raise NotifyError(f"unknown notification scheme '{scheme}' (see {APPRISE_WIKI})")
    if scheme not in manager.schemas(include_disabled=False):
        raise NotifyError(f"{scheme}:// notifications are not available on this system")
    # Apprise's reason helps ("Invalid ~From~ email specified"), unless it repeats the URL.
    reasons = [line for line in capture.errors if "://" not in line]
    reason = f" ({reasons[-1].rstrip('.')})" if reasons else ""
    raise NotifyError(f"invalid {scheme}:// URL{reason}: {mask_url(text)}")


def check_url(url: str) -> str:
    """Validate a notification URL without sending anything.

    Args:
        url: An Apprise URL, e.g. `jsons://hooks.example.com/alerts` or `mailtos://...`.

    Returns:
        The URL as given, stripped of surrounding whitespace.

    Raises:
        NotifyError: For an empty or malformed URL or a scheme Apprise does not know; the message
            shows the URL masked.
    """
    load_plugin(url)
    return url.strip()


def mask_url(url: str) -> str:
    """A notification URL for display, with every secret hidden.

    Args:
        url: Any string that is meant to be a notification URL.

    Returns:
        Apprise's privacy form of the URL (`url(privacy=True)`) with the query arguments as given,
        every value that is not a plain setting (`format`, `to`, `priority`, ...) shown as `****`,
        and every password, private token (as Apprise's plugin declares them), `+header`,
        `-param` and `:payload` value, and token-like path segment (8+ characters mixing letters
        and digits, or 16+ characters) replaced by `****` wherever it shows. A URL Apprise cannot
        parse shows only its scheme: `foo://****`, or `****` without one.
    """
    text = url.strip() if isinstance(url, str) else ""
    scheme = url_scheme(text)
    fallback = f"{scheme}://{MASK}" if scheme else MASK
    plugin = _instantiate(text) if scheme else None
    if plugin is None:
        return fallback
    display = plugin.url(privacy=True)
    base = display.split("?", 1)[0]
    query = text.split("?", 1)[1].split("#", 1)[0] if "?" in text else ""
    arguments = []
    for key, value in query_arguments(query):
        public = key[:1] not in "+-:" and key.lower() in PUBLIC_ARGUMENTS
        shown = quote(value, safe="@,") if public or not value else MASK
        arguments.append(f"{quote(key, safe='+-:')}={shown}")
    masked = base + ("?" + "&".join(arguments) if arguments else "")
    masked = hide(masked, secrets_of(text, plugin))
    return masked if url_scheme(masked) else fallback


def destinations(plugin: NotifyBase) -> list[tuple[str, int | None]]:
    """The (host, port) pairs the plugin connects to that come from the URL, not from Apprise."""
    name = type(plugin).__name__
    if name == "NotifyEmail":
        return [(plugin.smtp_host or plugin.host or "", plugin.port)]
    if name == "NotifyZulip":
        return [(f"{plugin.organization}.{plugin.hostname}", None)]
    if plugin.secure_protocol in _HOST_IS_NOT_DESTINATION or plugin.protocol in _HOST_IS_NOT_DESTINATION:
        return []
    if str(getattr(plugin, "mode", "")) in _HOSTED_MODES:
        return []
    if "host" in type(plugin).template_tokens and plugin.host:
        return [(plugin.host, plugin.port)]
    return []  # no {host} token, or an empty one: the service's own public API host
