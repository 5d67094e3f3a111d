"""extract.notify against real receivers on 127.0.0.1: a JSON webhook and an aiosmtpd SMTP server.

No test sends traffic beyond loopback: services with fixed public hosts (Slack, Discord, ...) are
only parsed, masked and guarded, never sent to, and host names resolve through the test suite's
loopback-only resolver (tests/conftest.py) or a patched one.
"""

import html
import json
import logging
import re
import socket
import threading
import time
from html.parser import HTMLParser

import apprise
import pytest
from markdown_it import MarkdownIt

from extract import notify
from extract.notify import (
    DeliveryOutcome,
    DeliveryRefused,
    NotifyError,
    check_url,
    deliver,
    deliver_all,
    guard_url,
    mask_url,
    render_alert,
)
from tests.http_server import closed_port, respond, serve
from tests.receivers import make_smtp_fixture, make_webhook_fixture

webhook = make_webhook_fixture()
other_webhook = make_webhook_fixture(name="other_webhook")
smtp = make_smtp_fixture()

HOSTILE_TITLE = "Storm <script>alert(1)</script> [x](javascript:alert(1)) **bold** `code` @everyone"


@pytest.fixture(autouse=True)
def no_fqdn_lookup(monkeypatch):
    """smtplib names itself with socket.getfqdn(), which may ask DNS; tests stay on loopback."""
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "client.localhost")


def make_payload(**changes) -> dict:
    """An alert payload shaped as extract.notify documents it."""
    payload = {
        "alert_id": "al-1",
        "kind": "new",
        "created_at": "2025-03-01T09:30:00+00:00",
        "watch": {"id": "w1", "name": "Storms", "query": "storm OR hurricane"},
        "story": {
            "story_id": "s9", "headline": "Storm hits the coast", "article_count": 5,
            "duplicate_count": 2, "source_count": 3, "sources": ["Example News", "Daily Planet", "Wire"],
            "first_seen_at": "2025-03-01T06:00:00+00:00", "last_seen_at": "2025-03-01T09:10:00+00:00",
        },
        "articles": [
            {"article_id": "a7", "title": "Storm hits the coast", "url": "https://example.com/a7",
             "source": "Example News", "published_at": "2025-03-01T06:00:00+00:00",
             "duplicate_of": None, "duplicate_kind": None,
             "duplicates": [{"title": "Storm hits coast", "url": "https://wire.example/x", "source": "Wire",
                             "kind": "rewrite"}]},
            {"article_id": "a8", "title": "Coast braces for more", "url": "https://planet.example/b",
             "source": "Daily Planet", "published_at": None, "duplicate_of": None, "duplicate_kind": None,
             "duplicates": []},
        ],
    }
    payload.update(changes)
    return payload


def hostile_payload() -> dict:
    """A payload whose every feed value tries to be markup."""
    payload = make_payload()
    payload["watch"]["name"] = "Watch <b>&amp;</b>"
    payload["story"]["headline"] = HOSTILE_TITLE
    payload["story"]["sources"] = ["<img src=x onerror=alert(1)>", "[src](javascript:alert(2))"]
    payload["articles"][0]["title"] = HOSTILE_TITLE
    payload["articles"][0]["url"] = "javascript:alert(3)"
    payload["articles"][0]["source"] = "Evil_Source *x*"
    payload["articles"][0]["duplicates"][0]["title"] = "<a href='https://evil.example'>dup</a>"
    payload["articles"][0]["duplicates"][0]["url"] = "data:text/html,<script>alert(4)</script>"
    payload["articles"][1]["title"] = "Link with ) and ] inside"
    payload["articles"][1]["url"] = "https://planet.example/b?q=(1)&r=[2]<x>"
    return payload


MESSAGE = render_alert(make_payload())


# --- JSON webhooks --------------------------------------------------------------------------


def test_json_webhook_receives_the_payload_in_the_envelope(webhook):
    outcome = deliver(webhook.json_url("/hook"), MESSAGE, allow_private_networks=True)

    assert outcome == DeliveryOutcome(True, None)
    [request] = webhook.wait_for(1)
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["newswatch"]["alert_id"] == "al-1"
    assert body["newswatch"] == MESSAGE.payload
    assert body["title"] == "newswatch · Storms: Storm hits the coast (5 articles, 3 sources)"
    assert body["message"] == MESSAGE.text.rstrip()  # Apprise trims trailing whitespace
    assert {"version", "type"} <= body.keys()


def test_failure_is_one_line_without_secrets_and_the_next_attempt_succeeds(webhook):
    url = webhook.json_url("/hook/Tok3nInPath123", "+X-Api-Key=hdr-s3cret-value&-apikey=qry-s3cret-value")
    url = url.replace("json://", "json://alice:pw-s3cret-value@")
    webhook.fail_next(1, status=500)

    failed = deliver(url, MESSAGE, allow_private_networks=True)
    succeeded = deliver(url, MESSAGE, allow_private_networks=True)

    assert not failed.ok
    assert "500" in failed.error and "\n" not in failed.error
    for secret in ("pw-s3cret-value", "hdr-s3cret-value", "qry-s3cret-value", "Tok3nInPath123"):
        assert secret not in failed.error
    assert succeeded == DeliveryOutcome(True, None)
    first, second = webhook.wait_for(2)
    assert first.headers["x-api-key"] == "hdr-s3cret-value"  # the secrets themselves still work
    assert second.json()["newswatch"]["alert_id"] == "al-1"


def test_apprise_retries_and_optional_are_overridden(webhook):
    webhook.fail_next(5, status=503)

    outcome = deliver(webhook.json_url("/hook", "retry=3&wait=0&optional=yes"), MESSAGE,
                      allow_private_networks=True)

    assert not outcome.ok  # optional=yes would have reported the failure as a success
    time.sleep(0.2)
    assert len(webhook.received) == 1  # one attempt; retries are the caller's


def test_redirects_are_not_followed(webhook):
    def redirect(request):
        respond(request, 307, b"", headers={"Location": webhook.url + "/elsewhere"})

    with serve({"/hook": redirect}) as server:
        # redirect=yes in the URL must not turn following back on.
        outcome = deliver(f"json://127.0.0.1:{server.port}/hook?redirect=yes", MESSAGE,
                          allow_private_networks=True)

    assert not outcome.ok
    assert "307" in outcome.error
    assert webhook.wait_for(1, timeout=0.3) == []


def test_stalled_receiver_costs_about_the_timeout(webhook):
    webhook.stall_next(10)

    started = time.monotonic()
    outcome = deliver(webhook.json_url(), MESSAGE, allow_private_networks=True, timeout=1.0)
    elapsed = time.monotonic() - started

    assert not outcome.ok
    assert 0.8 <= elapsed < 4, elapsed
    assert "timeout 1 s" in outcome.error


def test_deliver_all_is_not_held_up_by_a_stalled_endpoint(webhook, other_webhook):
    webhook.stall_next(10)
    started = time.monotonic()

    outcomes = deliver_all([(webhook.json_url("/slow"), MESSAGE), (other_webhook.json_url("/fast"), MESSAGE)],
                           allow_private_networks=True, timeout=2.0)
    elapsed = time.monotonic() - started

    assert [outcome.ok for outcome in outcomes] == [False, True]  # input order
    [fast] = other_webhook.received
    # The healthy endpoint got its message well before the stalled attempt gave up.
    assert fast.received_at - started < 1.5
    assert elapsed < 6, elapsed


def test_deliver_all_keeps_input_order_with_limited_concurrency(webhook):
    messages = [render_alert(make_payload(alert_id=f"al-{number}")) for number in range(5)]
    webhook.fail_next(1, status=500)  # whichever arrives first fails

    deliveries = [(webhook.json_url(f"/hook/{number}"), message) for number, message in enumerate(messages)]
    outcomes = deliver_all(deliveries, allow_private_networks=True, timeout=5, concurrency=2)

    assert len(outcomes) == 5 and sum(not outcome.ok for outcome in outcomes) == 1
    received = {request.path: request for request in webhook.wait_for(5)}
    for number, outcome in enumerate(outcomes):
        request = received[f"/hook/{number}"]
        assert request.json()["newswatch"]["alert_id"] == f"al-{number}"
    assert deliver_all([], allow_private_networks=True, timeout=1) == []


# --- e-mail ---------------------------------------------------------------------------------


def test_email_arrives_with_the_html_body_and_the_headline_in_the_subject(smtp):
    outcome = deliver(smtp.mailto_url(), MESSAGE, allow_private_networks=True)

    assert outcome == DeliveryOutcome(True, None)
    [mail] = smtp.wait_for(1)
    assert "Storm hits the coast" in mail["Subject"]
    assert mail["Subject"] == MESSAGE.title
    assert smtp.envelopes == [("newswatch@example.com", ["reader@example.com"])]
    assert mail.get_content_type() == "multipart/alternative"
    html_part = mail.get_body(("html",)).get_content()
    assert html_part.replace("\r\n", "\n").strip() == MESSAGE.html.strip()
    assert '<a href="https://example.com/a7"' in html_part
    plain_part = mail.get_body(("plain",)).get_content()
    assert "Storm hits the coast" in plain_part and "<" not in plain_part


def test_email_to_a_missing_server_fails_in_one_line():
    port = closed_port()
    outcome = deliver(f"mailto://user:mail-s3cret@127.0.0.1:{port}?from=a@example.com&to=b@example.com",
                      MESSAGE, allow_private_networks=True, timeout=2)

    assert not outcome.ok
    assert "mail-s3cret" not in outcome.error and "\n" not in outcome.error


# --- the SSRF guard -------------------------------------------------------------------------


def test_loopback_is_refused_unless_private_networks_are_allowed(webhook, smtp):
    refused = deliver(webhook.json_url(), MESSAGE)
    refused_mail = deliver(smtp.mailto_url(), MESSAGE)
    refused_name = deliver(f"json://localhost:{webhook.port}/hook", MESSAGE)

    for outcome in (refused, refused_mail, refused_name):
        assert not outcome.ok
        assert "loopback" in outcome.error and "NEWSWATCH_ALLOW_PRIVATE_NETWORKS" in outcome.error
    assert webhook.wait_for(1, timeout=0.3) == [] and smtp.messages == []

    with pytest.raises(DeliveryRefused):
        guard_url(webhook.json_url(), allow_private_networks=False)
    guard_url(webhook.json_url(), allow_private_networks=True)
    assert deliver(webhook.json_url(), MESSAGE, allow_private_networks=True).ok
    assert len(webhook.wait_for(1)) == 1


@pytest.mark.parametrize("url", [
    "json://10.0.0.1/hook",
    "jsons://169.254.169.254/latest/meta-data",
    "json://[::1]:8080/hook",
    "json://[::ffff:127.0.0.1]/hook",
    "xml://192.168.1.10/hook",
    "form://172.16.0.1/hook",
    "ntfy://tk_token1234567@10.1.2.3/alerts",
    "gotify://100.64.0.1/AppTokenSecret",
    "mailtos://user:pw@example.com?smtp=192.168.1.5&from=a@example.com",
    "mailto://127.0.0.1:2525?from=a@example.com&to=b@example.com",
    "mmost://10.0.0.2/abcdefghijklmnopqrstuvwxyz",
    "workflows://127.0.0.1:443/workflowid123/signature456",
])
def test_private_destinations_are_refused(url):
    with pytest.raises(DeliveryRefused, match="refused: "):
        guard_url(url, allow_private_networks=False)
    guard_url(url, allow_private_networks=True)


def test_host_names_must_resolve_to_public_addresses(monkeypatch):
    # The suite's resolver refuses every name but localhost: an unresolvable host is refused.
    with pytest.raises(DeliveryRefused, match="cannot resolve hooks.example.com"):
        guard_url("jsons://hooks.example.com/alerts", allow_private_networks=False)

    answers = {"mixed.example": ["93.184.215.14", "10.0.0.7"], "public.example": ["93.184.215.14"]}
    monkeypatch.setattr(notify, "_resolve", lambda host, port: answers[host])
    with pytest.raises(DeliveryRefused, match="10.0.0.7 is a private address"):
        guard_url("jsons://mixed.example/alerts", allow_private_networks=False)
    guard_url("jsons://public.example/alerts", allow_private_networks=False)
    guard_url("mailtos://user:pw@mixed.example?smtp=public.example&from=a@mixed.example",
              allow_private_networks=False)  # the SMTP server is what is connected to
    answers["apprise.zulip.internal.example"] = ["10.0.0.9"]  # Zulip: <organization>.<hostname>
    with pytest.raises(DeliveryRefused, match="10.0.0.9"):
        guard_url("zulip://bot@apprise.zulip.internal.example/lqn6mpwpam6VZzbCW0o7olmk3hwbQSKa",
                  allow_private_networks=False)


def test_a_resolver_that_never_answers_costs_the_timeout(monkeypatch):
    answered = threading.Event()
    monkeypatch.setattr(notify, "_resolve", lambda host, port: answered.wait(5) and [])
    started = time.monotonic()

    with pytest.raises(DeliveryRefused, match="cannot resolve slow.example .no answer within 0.5 s"):
        guard_url("jsons://slow.example/alerts", allow_private_networks=False, timeout=0.5)
    assert time.monotonic() - started < 2
    answered.set()  # let the abandoned lookup finish


@pytest.mark.parametrize("url", [
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    "discord://123456789012345678/ABCdefTOKENghi",
    "tgram://123456789:AAEsecretBotToken/987654321",
    "ntfy://mytopic",
    "mailgun://user@example.com/api-key-123",
    "pushdeer://PDU1234TKfEsaeSomeKeyHere",
    "notica://abc123",
])
def test_services_with_fixed_public_hosts_pass_without_resolving(url):
    # Resolving anything here would fail (loopback-only resolver) and be reported as refused.
    guard_url(url, allow_private_networks=False)


def test_plain_http_webhooks_connect_to_the_checked_address(webhook, monkeypatch):
    """DNS rebinding: the request goes to the address the guard checked, with the original Host."""
    resolved = []

    def resolve_once(host, port):
        resolved.append(host)
        return ["127.0.0.1"]  # stands in for a public answer (describe_address is patched below)

    monkeypatch.setattr(notify, "_resolve", resolve_once)
    monkeypatch.setattr(notify, "describe_address", lambda address: None)

    outcome = deliver(f"json://hooks.example.test:{webhook.port}/hook", MESSAGE)

    assert outcome == DeliveryOutcome(True, None), outcome
    [request] = webhook.wait_for(1)
    assert request.headers["host"] == f"hooks.example.test:{webhook.port}"
    assert resolved == ["hooks.example.test"]  # "hooks.example.test" itself never reached DNS again


# --- URLs: checking and masking -------------------------------------------------------------


def test_check_url_validates_without_sending(webhook):
    assert check_url(f"  {webhook.json_url()}  ") == webhook.json_url()
    mail_url = "mailtos://user:pw@example.com?to=b@example.com"
    assert check_url(mail_url) == mail_url
    assert webhook.received == []

    unknown = "unknown notification scheme 'foo' (see https://github.com/caronc/apprise/wiki)"
    with pytest.raises(NotifyError, match=re.escape(unknown)):
        check_url("foo://bar/secret-token-123")
    with pytest.raises(NotifyError, match="workflows://"):
        check_url("msteams://secretA/secretB/secretC")
    with pytest.raises(NotifyError, match="json:// or jsons://"):
        check_url("https://example.com/hook")
    with pytest.raises(NotifyError, match="empty"):
        check_url("   ")
    with pytest.raises(NotifyError, match=r"^invalid json:// URL"):
        check_url("json://")
    with pytest.raises(NotifyError) as invalid:
        check_url("mailto://user:hunter2-s3cret@?to=nobody")
    assert "hunter2-s3cret" not in str(invalid.value)

    outcome = deliver("foo://bar", MESSAGE)
    assert outcome == DeliveryOutcome(False, unknown)


SLACK_TOKENS = ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"]
MASK_CASES = [
    # (url, secrets that must not show, parts that must show)
    ("json://user:pw-s3cret@hooks.example.com:8080/hook"
     "?+X-Token=hdr-s3cret&-apikey=qry-s3cret&:extra=payload-s3cret&format=markdown",
     ["pw-s3cret", "hdr-s3cret", "qry-s3cret", "payload-s3cret"],
     ["json://", "hooks.example.com:8080", "format=markdown"]),
    ("jsons://alice:pa55w0rd-x@example.com/hooks/Zx81Tk9Qm2Lp7Vb4",
     ["pa55w0rd-x", "Zx81Tk9Qm2Lp7Vb4"], ["jsons://", "example.com"]),
    ("json://example.com/hook?token=tok-s3cret&apikey=key-s3cret&pass=pass-s3cret",
     ["tok-s3cret", "key-s3cret", "pass-s3cret"], ["example.com", "token=****"]),
    ("mailto://user:mail-s3cret@example.com?to=bob@example.org",
     ["mail-s3cret"], ["mailto://", "example.com", "bob@example.org"]),
    ("mailtos://user:mail-s3cret@smtp.example.com?smtp=smtp.example.com&from=a@example.com&to=b@example.com",
     ["mail-s3cret"], ["mailtos://", "smtp.example.com"]),
    ("mailtos://me@example.com?pass=query-s3cret&smtp=smtp.example.com",
     ["query-s3cret"], ["mailtos://", "example.com"]),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", SLACK_TOKENS, ["slack://"]),
    ("https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", SLACK_TOKENS,
     ["slack://"]),
    ("slack://xoxb-1234-1234-4ddbc191d40ee098cbaae6f3523ada2d/#general",
     ["4ddbc191d40ee098cbaae6f3523ada2d"], ["slack://"]),
    ("discord://123456789012345678/ABCdefTOKENghiJKLmnoPQRstu",
     ["ABCdefTOKENghiJKLmnoPQRstu", "123456789012345678"], ["discord://"]),
    ("https://discord.com/api/webhooks/123456789012345678/ABCdefTOKENghiJKL",
     ["ABCdefTOKENghiJKL"], ["discord://"]),
    ("msteams://secretA-1111/secretB-2222/secretC-3333",
     ["secretA-1111", "secretB-2222", "secretC-3333"], ["msteams://****"]),
    ("workflows://prod-01.westus.logic.azure.com:443/workflowid123/signature456?sig=sig-s3cret",
     ["workflowid123", "signature456", "sig-s3cret"], ["prod-01.westus.logic.azure.com"]),
    ("ntfy://tk_s3cret0token123@ntfy.example.com/alerts",
     ["tk_s3cret0token123"], ["ntfy://", "ntfy.example.com", "alerts"]),
    ("ntfys://ntfy.sh/alerts?token=tk_query0s3cret", ["tk_query0s3cret"], ["ntfys://", "ntfy.sh"]),
    ("ntfys://admin:ntfy-s3cret@ntfy.example.com/alerts", ["ntfy-s3cret"], ["ntfys://", "admin"]),
    ("tgram://123456789:AAEs3cretBotToken0123/987654321", ["AAEs3cretBotToken0123", "123456789:"],
     ["tgram://"]),
    ("gotify://gotify.example.com/AppToken0S3cret", ["AppToken0S3cret"], ["gotify://gotify.example.com"]),
    ("foo://user:unknown-s3cret@host/path", ["unknown-s3cret", "host"], ["foo://****"]),
    ("not a url with s3cret words", ["s3cret"], ["****"]),
]


@pytest.mark.parametrize(("url", "secrets", "visible"), MASK_CASES, ids=[case[0][:24] for case in MASK_CASES])
def test_mask_url_hides_every_secret(url, secrets, visible):
    masked = mask_url(url)

    for secret in secrets:
        assert secret not in masked, masked
    for part in visible:
        assert part in masked, masked
    assert "****" in masked or "..." in masked


# --- logging --------------------------------------------------------------------------------


def test_apprise_log_records_never_show_secrets(webhook, caplog):
    url = webhook.json_url("/hooks/Pq7Zr2Lm9Xv4Kt1B", "+Authorization=Bearer-hdr0s3cret")
    url = url.replace("json://", "json://bob:log-pw0s3cret@")
    webhook.fail_next(1, status=500)
    # DEBUG is where Apprise and urllib3 print request URLs and paths.
    caplog.set_level(logging.DEBUG)

    outcome = deliver(url, MESSAGE, allow_private_networks=True)

    assert not outcome.ok
    apprise_records = [record for record in caplog.records if record.name.startswith(("apprise", "urllib3"))]
    assert any("/hooks/****" in record.getMessage() for record in apprise_records)  # the path is logged
    for record in caplog.records:
        for secret in ("Pq7Zr2Lm9Xv4Kt1B", "Bearer-hdr0s3cret", "log-pw0s3cret"):
            assert secret not in record.getMessage(), record.getMessage()
    assert "error=500" in outcome.error


def test_records_outside_an_attempt_are_untouched(caplog):
    caplog.set_level(logging.INFO, logger="apprise")
    logging.getLogger("apprise").info("unrelated line with Pq7Zr2Lm9Xv4Kt1B")
    assert "unrelated line with Pq7Zr2Lm9Xv4Kt1B" in caplog.messages


# --- rendering ------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text content."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse_html(markup: str) -> _Tags:
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    return parser


def test_alert_title_and_counts():
    assert MESSAGE.title == "newswatch · Storms: Storm hits the coast (5 articles, 3 sources)"
    single = render_alert(make_payload(story={**make_payload()["story"], "article_count": 1,
                                              "source_count": 1}))
    assert single.title.endswith("(1 article, 1 source)")
    developing = render_alert(make_payload(kind="developing",
                                           watch={"id": "w2", "name": "Quakes", "like": "earthquake damage"}))
    assert developing.text.startswith("Developing story for watch Quakes (like: earthquake damage)")
    assert "like: earthquake damage" in developing.markdown
    assert "First seen 2025-03-01 06:00 UTC, last seen 2025-03-01 09:10 UTC" in MESSAGE.text
    assert "rewrite: Storm hits coast · Wire · https://wire.example/x" in MESSAGE.text
    json.dumps(MESSAGE.payload)  # JSON-serialisable as it is
    with pytest.raises(ValueError, match="alert_id"):
        render_alert({"watch": {}, "story": {}})


def test_alert_markdown_lists_articles_with_links():
    rendered = MarkdownIt("commonmark").render(MESSAGE.markdown)
    links = re.findall(r'<a href="([^"]*)">([^<]*)</a>', rendered)
    assert links == [("https://example.com/a7", "Storm hits the coast"),
                     ("https://wire.example/x", "Storm hits coast"),
                     ("https://planet.example/b", "Coast braces for more")]
    assert "<ol>" in rendered and "<strong>Storms</strong>" in rendered


def test_hostile_feed_data_stays_text_in_markdown():
    message = render_alert(hostile_payload())
    rendered = MarkdownIt("commonmark").render(message.markdown)  # raw HTML on: escaping must hold
    parsed = parse_html(rendered)

    assert "<script" not in rendered.lower() and "<img" not in rendered.lower()
    hrefs = [attrs.get("href") for tag, attrs in parsed.tags if tag == "a"]
    assert hrefs == ["https://planet.example/b?q=%281%29&r=%5B2%5D%3Cx%3E"]  # only the http(s) URL
    text = html.unescape("".join(parsed.text)).replace(notify.WORD_JOINER, "")
    assert HOSTILE_TITLE in text  # shown exactly, `code`, **bold** and all
    assert "Evil_Source *x*" in text and "[src](javascript:alert(2))" in text
    assert [tag for tag, _ in parsed.tags if tag in ("code", "em", "img")] == []
    assert sum(tag == "strong" for tag, _ in parsed.tags) == 2  # only the watch name and headline
    assert "@everyone" not in message.markdown  # no mention survives for chat services


def test_hostile_feed_data_stays_text_in_html():
    message = render_alert(hostile_payload())
    parsed = parse_html(message.html)

    assert message.html.startswith("<!DOCTYPE html>")
    assert "<script" not in message.html.lower()
    hrefs = [attrs["href"] for tag, attrs in parsed.tags if tag == "a"]
    assert hrefs == ["https://planet.example/b?q=(1)&r=[2]<x>"]  # only the http(s) URL
    assert {tag for tag, _ in parsed.tags} <= {"html", "head", "meta", "title", "body", "div", "p", "strong",
                                               "ol", "ul", "li", "a", "br", "span"}
    assert not any(name.startswith("on") or name == "src" for _, attrs in parsed.tags for name in attrs)
    text = "".join(parsed.text)
    assert HOSTILE_TITLE in text and "<img src=x onerror=alert(1)>" in text
    assert "<a href='https://evil.example'>dup</a>" in text


def test_hostile_feed_data_in_text_and_title_is_plain():
    payload = hostile_payload()
    payload["story"]["headline"] = "Two\nlines \u202eevil\x00"
    message = render_alert(payload)

    assert message.title == "newswatch · Watch <b>&amp;</b>: Two lines evil (5 articles, 3 sources)"
    assert HOSTILE_TITLE in message.text and "javascript:alert(3)" in message.text
    assert "\\" not in message.text  # no Markdown escapes in the plain form


def test_each_service_gets_the_form_it_renders():
    def compose(url):
        return notify._compose(apprise.Apprise.instantiate(url), MESSAGE)

    assert compose("mailto://user:pw@example.com") == (MESSAGE.title, MESSAGE.html, apprise.NotifyFormat.HTML)
    slack = compose("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ")
    assert slack[1:] == (MESSAGE.html, apprise.NotifyFormat.HTML)
    assert compose("workflows://prod.example.com/wf1234567/sig1234567") == (
        MESSAGE.title, MESSAGE.markdown, apprise.NotifyFormat.MARKDOWN)
    assert compose("json://example.com/hook") == (MESSAGE.title, MESSAGE.text, apprise.NotifyFormat.TEXT)
    telegram = compose("tgram://123456789:AAEsecretBotToken/987654321")
    assert telegram[1:] == (MESSAGE.text, apprise.NotifyFormat.TEXT)
    # Discord renders Markdown in its text mode too, and would paste the title in raw: escaped here.
    title, body, body_format = compose("discord://123456789012345678/ABCdefTOKENghi")
    assert (title, body_format) == ("", apprise.NotifyFormat.MARKDOWN)
    assert body.startswith("**newswatch · Storms:" + notify.WORD_JOINER + " Storm hits the coast (5")
    assert body.endswith(MESSAGE.markdown)

