"""Errors raised by the provider clients (Tavus and Daily), and what the user should do about each.

Every failure of a provider call becomes exactly one of these, translated at one boundary
(`tavus._http`), ``from`` the foreign exception::

    ProviderError                    code, message, retryable, provider, status, method, url
    ├── AuthError                    401/403 (and Daily's 400 authorization-header-error)  fatal
    ├── OutOfCreditsError            402 "out of conversational credits"                   fatal
    ├── ConcurrencyLimitError        Tavus 400 "maximum concurrent conversations"      retryable
    ├── NotFoundError                Tavus 400 "Invalid …_id", 404 not-found               fatal
    ├── ReplicaNotUsableError        replica exists but is training or errored             fatal
    ├── RequestRejectedError         any other 4xx (validation, bad patch, name taken)     fatal
    ├── RateLimitedError             429, ``retry_after_s`` when the server said       retryable
    ├── ServerError                  5xx, ``retry_after_s`` when the server said       retryable
    ├── TransportError               connect/read/write failure, ``request_sent`` flag retryable
    │   └── ProviderTimeoutError     no answer within the timeout, or 408              retryable
    └── UnexpectedResponseError      HTML / non-JSON / a body not of the known shape       fatal

``code`` is a short stable word published in ``failed`` events (see shared/CONTRACT.md), e.g.
``tavus_auth``, ``replica_not_found``, ``tavus_concurrency_limit``, ``daily_unavailable``.
Tavus uses: ``tavus_auth``, ``tavus_out_of_credits``, ``tavus_concurrency_limit``,
``conversation_not_found``, ``persona_not_found``, ``replica_not_found``, ``replica_not_ready``,
``replica_missing``, ``persona_invalid``, ``tavus_rejected``, ``tavus_rate_limited``,
``tavus_unavailable``, ``provider_timeout``, ``tavus_unexpected_response``.
Messages never contain an API key, a request body or raw HTML.
"""

from __future__ import annotations

from typing import Literal

Provider = Literal["tavus", "daily"]

KEY_SETTING: dict[str, str] = {"tavus": "TAVUS_API_KEY", "daily": "DAILY_API_KEY"}
URL_SETTING: dict[str, str] = {"tavus": "TAVUS_BASE_URL", "daily": "DAILY_API_URL"}


class ProviderError(Exception):
    """A provider call failed; ``message`` says what the user should do next."""

    default_code = "provider_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: Provider,
        code: str | None = None,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.code = code or self.default_code
        self.status = status
        self.method = method
        self.url = url

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status!r},"
            f" message={self.message!r})"
        )

    def as_event_error(self) -> dict[str, object]:
        """The ``error`` object of a ``failed`` or ``retrying`` event."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class AuthError(ProviderError):
    """The API key was missing or rejected."""

    default_code = "provider_auth"


class OutOfCreditsError(ProviderError):
    """The Tavus account has no conversational credits left."""

    default_code = "tavus_out_of_credits"


class ConcurrencyLimitError(ProviderError):
    """The account's concurrent-conversation cap is reached; a slot may free up later."""

    default_code = "tavus_concurrency_limit"
    retryable = True


class NotFoundError(ProviderError):
    """An id or name the provider does not know (Tavus says 400 "Invalid …_id", Daily 404)."""

    default_code = "not_found"


class ReplicaNotUsableError(ProviderError):
    """The replica exists but cannot join a conversation (still training, or training failed)."""

    default_code = "replica_not_ready"


class RequestRejectedError(ProviderError):
    """The provider refused the request as invalid (any other 4xx)."""

    default_code = "provider_rejected"


class RateLimitedError(ProviderError):
    """429: too many requests; ``retry_after_s`` is the server's hint when it gave one."""

    default_code = "provider_rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class ServerError(ProviderError):
    """5xx: the provider failed; trying again later usually works (``retry_after_s`` if it said)."""

    default_code = "provider_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class TransportError(ProviderError):
    """The request did not complete; ``request_sent`` is False when it surely never left."""

    default_code = "provider_unavailable"
    retryable = True

    def __init__(self, message: str, *, request_sent: bool = True, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.request_sent = request_sent


class ProviderTimeoutError(TransportError):
    """The provider did not answer within the timeout."""

    default_code = "provider_timeout"


class UnexpectedResponseError(ProviderError):
    """The answer was not what the API returns (HTML, not JSON, or an unknown shape)."""

    default_code = "provider_unexpected_response"


def unavailable_code(provider: Provider) -> str:
    """The stable code for "this provider is down": ``tavus_unavailable``, ``daily_unavailable``."""
    return f"{provider}_unavailable"
