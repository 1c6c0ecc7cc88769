"""How Tavus fails, translated: ``classify_tavus_error`` maps an error response (status plus a body
whose text sits under ``error`` or ``message``) to a ``tavus.errors`` class and a message saying
what to do. Tavus answers unknown ids with 400 "Invalid …_id" and the concurrency cap with 400.
"""

from __future__ import annotations

import re

from tavus._http import FailedResponse
from tavus.errors import (
    AuthError,
    ConcurrencyLimitError,
    NotFoundError,
    OutOfCreditsError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
)

_INVALID_ID = re.compile(r"invalid (conversation_id|persona_id|replica_id|replica_uuid)", re.I)
_CONCURRENCY = "maximum concurrent conversations"
_KINDS = ("conversation", "persona", "replica")
_LIST_HINT = {
    "conversation": "list them with `avatar-worker conversations list`",
    "persona": "list yours with `avatar-worker personas list`",
    "replica": "list yours with `avatar-worker replicas list`",
}


def classify_tavus_error(resp: FailedResponse) -> ProviderError:
    """Map a Tavus error response to the error class and the message a user sees."""
    status, said = resp.status, tavus_error_text(resp)
    quoted = f"{status} {said}" if said else str(status)
    if status in (401, 403):
        return AuthError(_auth_message(status, said), provider="tavus", code="tavus_auth")
    if status == 402:
        return OutOfCreditsError(
            f"The Tavus account is out of conversational credits ({quoted}); add credits or"
            " upgrade the plan in the Tavus developer portal.",
            provider="tavus",
        )
    if status == 408:
        return ProviderTimeoutError(
            f"Tavus timed out on {resp.method} {resp.path} ({status}); try again later.",
            provider="tavus",
        )
    if status == 429:
        return RateLimitedError(
            _rate_message(resp),
            provider="tavus",
            code="tavus_rate_limited",
            retry_after_s=resp.retry_after_s,
        )
    if status >= 500:
        return ServerError(
            f"Tavus is unavailable ({status} on {resp.method} {resp.path}); try again later"
            " or check status.tavus.io.",
            provider="tavus",
            code="tavus_unavailable",
            retry_after_s=resp.retry_after_s,
        )
    if resp.body is None:
        return resp.unexpected()
    return _classify_json_4xx(resp, said, quoted)


def _classify_json_4xx(resp: FailedResponse, said: str, quoted: str) -> ProviderError:
    if _CONCURRENCY in said.lower():
        return ConcurrencyLimitError(
            f"The Tavus account has reached its maximum of concurrent conversations ({quoted})."
            " End idle conversations (e.g. `avatar-worker conversations end --all-active`) or"
            " raise the plan's limit.",
            provider="tavus",
        )
    match = _INVALID_ID.search(said)
    if match:
        field = match.group(1).lower()
        return _not_found(field.split("_")[0], resp, quoted, uuid=field == "replica_uuid")
    if resp.status == 404:
        kind = next((k for k in _KINDS if f"{k}_id" in resp.endpoint), None)
        return _not_found(kind, resp, quoted, uuid=False) if kind else resp.unexpected()
    code = "persona_invalid" if resp.endpoint == "/personas" else "tavus_rejected"
    return RequestRejectedError(
        f"Tavus rejected {resp.method} {resp.path} ({quoted}).", provider="tavus", code=code
    )


def _not_found(kind: str, resp: FailedResponse, quoted: str, *, uuid: bool) -> NotFoundError:
    ident = resp.ids.get(f"{kind}_id")
    named = f"{kind} {ident}" if ident else f"the {kind} id sent"
    if uuid:
        hint = f" ({ident} looks like a persona id)" if ident and ident.startswith("p") else ""
        message = (
            f"Tavus rejected replica {ident or '(the persona default)'} ({quoted}): it is not a"
            f" usable replica of this account{hint}. A persona id in the replica slot, or a"
            " replica of another Tavus account, causes this; list yours with"
            " `avatar-worker replicas list`."
        )
    else:
        message = f"Tavus {named} does not exist on this account ({quoted}); {_LIST_HINT[kind]}."
    return NotFoundError(message, provider="tavus", code=f"{kind}_not_found")


def tavus_error_text(resp: FailedResponse) -> str:
    """Tavus's own words: ``error``, else ``message``, else a short non-HTML text."""
    body = resp.body
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if value:
                return _clip(value if isinstance(value, str) else str(value))
        return ""
    if isinstance(body, str):
        return _clip(body)
    return "" if resp.is_html else resp.snippet


def _clip(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _auth_message(status: int, said: str) -> str:
    if status == 403:
        return (
            f"Tavus refused TAVUS_API_KEY (403 {said or 'Forbidden'}); the key may be limited to"
            " other IP addresses. Check the key in the Tavus developer portal."
        )
    return (
        f"TAVUS_API_KEY was rejected by Tavus (401 {said or 'Unauthorized'}). Check the key in"
        " the Tavus developer portal."
    )


def _rate_message(resp: FailedResponse) -> str:
    after = f"; retry after {resp.retry_after_s:g} s" if resp.retry_after_s is not None else ""
    return f"Tavus is rate limiting requests (429 on {resp.method} {resp.path}){after}."
