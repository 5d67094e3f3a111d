"""monitoring.notification_urls and monitoring.masking: URLs checked without sending, shown with every secret hidden."""

import logging
import re

import pytest

from monitoring.alerts import render_alert
from monitoring.delivery import DeliveryOutcome, deliver
from monitoring.notification_urls import NotifyError, check_url, mask_url
from tests.receivers import make_webhook_fixture
from tests.sample_messages import make_payload

webhook = make_webhook_fixture()

MESSAGE = render_alert(make_payload())


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

def test_records_outside_an_attempt_are_untouched(caplog):
    caplog.set_level(logging.INFO, logger="apprise")
    logging.getLogger("apprise").info("unrelated line with Pq7Zr2Lm9Xv4Kt1B")
    assert "unrelated line with Pq7Zr2Lm9Xv4Kt1B" in caplog.messages
