"""SES: an outbox that shows every email SES accepted, as raw MIME.

AWS: SES sends what it accepts; a test of the notification path wants to read
those emails (headers, attachments, the password in the second message).

moto 5.2.5: keeps sent messages only as parsed fields inside its backend (no
HTTP API shows them), and SES v2 ``SendEmail`` with ``Content.Raw`` stores the
body decoded, so the exact bytes the client sent are not observable.

Patch: the SendEmail/SendRawEmail actions of SES v1 and SendEmail of SES v2
are wrapped. moto runs first, unchanged, so its checks stay in force (notably:
the sender identity must be verified — VerifyEmailIdentity / VerifyDomainIdentity
in v1, CreateEmailIdentity in v2 — as in AWS, otherwise MessageRejected). Only
an email moto accepted is appended to the outbox, in acceptance order:

    {"api": "sesv2" | "ses", "message_id": "...", "account": "...",
     "region": "...", "source": "...", "destinations": [...],
     "raw": "<raw MIME as text>", "raw_base64": "<the same bytes, base64>"}

Identities: moto treats every identity it holds as verified (it sends from
it, ``VerificationStatus`` ``SUCCESS``) yet answers GetEmailIdentity with
``VerifiedForSendingStatus: false``; AWS answers ``true`` for an identity it
sends from. Patched: an identity moto holds as verified says so (moto's
``EmailIdentity.__init__`` wrapped), so a check of the sender's
verification (``keyfleet doctor``) reads what sending does.

``raw`` is the MIME exactly as the client sent it for Raw content (decoded as
UTF-8; raw_base64 carries the bytes when they are not UTF-8). For Simple
content (v1 SendEmail, v2 ``Content.Simple``) the harness renders a minimal
MIME message (From, To, Cc, Reply-To, Subject, Date, Message-ID, text and/or
HTML parts) the way SES would build one. ``destinations`` are the envelope
recipients: the Destination/Destinations parameter when given, otherwise the
To/Cc/Bcc headers of the raw message.
"""

from __future__ import annotations

import base64
import json
import threading
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP
from email.utils import formatdate, getaddresses, parseaddr
from typing import Any

_lock = threading.Lock()
_outbox: list[dict[str, Any]] = []


def outbox_snapshot() -> dict[str, Any]:
    with _lock:
        return {"messages": [dict(m) for m in _outbox]}


def outbox_clear() -> dict[str, Any]:
    with _lock:
        count = len(_outbox)
        _outbox.clear()
    return {"ok": True, "cleared": count}


def _record(
    api: str,
    response: Any,
    message_id: str,
    source: str | None,
    destinations: list[str],
    raw: bytes,
) -> None:
    _outbox.append(
        {
            "api": api,
            "message_id": message_id,
            "account": response.current_account,
            "region": response.region,
            "source": source or "",
            "destinations": destinations,
            "raw": raw.decode("utf-8", errors="replace"),
            "raw_base64": base64.b64encode(raw).decode("ascii"),
        }
    )


def _header_recipients(raw: bytes) -> list[str]:
    headers = BytesHeaderParser().parsebytes(raw)
    values = [v for name in ("To", "Cc", "Bcc") for v in headers.get_all(name, [])]
    return [addr for _, addr in getaddresses(values) if addr]


def _header_source(raw: bytes) -> str | None:
    value = BytesHeaderParser().parsebytes(raw).get("From")
    return parseaddr(value)[1] if value else None


def _destinations(dest: dict[str, Any] | None) -> list[str]:
    dest = dest or {}
    return [
        *(dest.get("ToAddresses") or []),
        *(dest.get("CcAddresses") or []),
        *(dest.get("BccAddresses") or []),
    ]


def render_simple(
    message_id: str,
    source: str,
    dest: dict[str, Any] | None,
    reply_to: list[str] | None,
    subject: str | None,
    text: str | None,
    html: str | None,
) -> bytes:
    """A minimal MIME message for Simple content, as SES assembles one."""
    dest = dest or {}
    msg = EmailMessage(policy=SMTP)
    msg["From"] = source
    if dest.get("ToAddresses"):
        msg["To"] = ", ".join(dest["ToAddresses"])
    if dest.get("CcAddresses"):
        msg["Cc"] = ", ".join(dest["CcAddresses"])
    if reply_to:
        msg["Reply-To"] = ", ".join(reply_to)
    msg["Subject"] = subject or ""
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{message_id}@email.amazonses.com>"
    if text is not None and html is not None:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text or "")
    return msg.as_bytes()


def _data(part: Any) -> str | None:
    if isinstance(part, dict):
        return part.get("Data")
    return None


def install() -> None:
    from moto.ses.models import EmailIdentity
    from moto.ses.responses import EmailResponse
    from moto.sesv2.responses import SESV2Response

    identity_init = EmailIdentity.__init__

    def init_identity(self: Any, *args: Any, **kwargs: Any) -> None:
        identity_init(self, *args, **kwargs)
        self.verified_for_sending_status = self.verification_status == "SUCCESS"

    if not getattr(EmailIdentity, "_keyfleet_verified", False):
        EmailIdentity.__init__ = init_identity  # type: ignore[method-assign]
        EmailIdentity._keyfleet_verified = True  # type: ignore[attr-defined]

    v1_send_email = EmailResponse.send_email
    v1_send_raw_email = EmailResponse.send_raw_email
    v2_send_email = SESV2Response.send_email

    def send_email_v1(self: Any) -> Any:
        with _lock:
            result = v1_send_email(self)
            message_id = result.result["MessageId"]
            source = self._get_param("Source")
            dest = self._get_param("Destination", {}) or {}
            message = self._get_param("Message", {}) or {}
            body = message.get("Body") or {}
            raw = render_simple(
                message_id,
                source,
                dest,
                self._get_param("ReplyToAddresses", []),
                _data(message.get("Subject")),
                _data(body.get("Text")),
                _data(body.get("Html")),
            )
            _record("ses", self, message_id, source, _destinations(dest), raw)
        return result

    def send_raw_email_v1(self: Any) -> Any:
        with _lock:
            # moto decodes the blob in place; keep the bytes as the client sent them.
            raw = self._get_param("RawMessage.Data")
            raw = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
            result = v1_send_raw_email(self)
            message_id = result.result["MessageId"]
            source = self._get_param("Source") or _header_source(raw)
            destinations = list(self._get_param("Destinations", []) or []) or (
                _header_recipients(raw)
            )
            _record("ses", self, message_id, source, destinations, raw)
        return result

    def send_email_v2(self: Any) -> Any:
        with _lock:
            result = v2_send_email(self)
            message_id = json.loads(result)["MessageId"]
            params = json.loads(self.body)
            source = params.get("FromEmailAddress")
            dest = params.get("Destination") or {}
            content = params.get("Content") or {}
            if "Raw" in content:
                raw = base64.b64decode(content["Raw"]["Data"])
                source = source or _header_source(raw)
                destinations = _destinations(dest) or _header_recipients(raw)
            else:
                simple = content.get("Simple") or {}
                body = simple.get("Body") or {}
                raw = render_simple(
                    message_id,
                    source,
                    dest,
                    params.get("ReplyToAddresses"),
                    _data(simple.get("Subject")),
                    _data(body.get("Text")),
                    _data(body.get("Html")),
                )
                destinations = _destinations(dest)
            _record("sesv2", self, message_id, source, destinations, raw)
        return result

    EmailResponse.send_email = send_email_v1  # type: ignore[method-assign]
    EmailResponse.send_raw_email = send_raw_email_v1  # type: ignore[method-assign]
    SESV2Response.send_email = send_email_v2  # type: ignore[method-assign]
