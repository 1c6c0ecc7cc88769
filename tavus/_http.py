"""JSON over httpx for provider REST APIs: the one boundary where httpx exceptions and error
responses become ``tavus.errors`` classes, retries with backoff, and a metrics hook.

Nothing provider-specific lives here: a provider client passes a ``Classifier`` (failed response →
error) and the names of its log events.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
import structlog

from tavus._retry import RetryPolicy, Sleep, is_unprocessed, parse_retry_after
from tavus.errors import (
    URL_SETTING,
    Provider,
    ProviderError,
    ProviderTimeoutError,
    TransportError,
    UnexpectedResponseError,
    unavailable_code,
)

__all__ = [
    "Classifier",
    "Expect",
    "FailedResponse",
    "JsonHttpClient",
    "LogEvents",
    "Observer",
    "Reply",
    "RetryPolicy",
    "Sleep",
    "body_snippet",
    "is_unprocessed",
    "parse_retry_after",
    "unexpected_message",
]

T = TypeVar("T")
E = TypeVar("E", bound=ProviderError)

Observer = Callable[[str, str, int | None, float], None]
"""Called after each HTTP attempt: (provider, endpoint_template, status_or_None, duration_s)."""

Expect = Literal["json", "optional", "none"]
"""What a success body must be: JSON; JSON or empty; or anything (ignored)."""

SNIPPET_CHARS = 80
MIN_SECRET_CHARS = 6  # shorter "secrets" (test keys) would mangle every message they occur in
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LogEvents:
    """Static event names of one provider, e.g. ``tavus.request_failed``."""

    request_failed: str
    retrying: str
    observer_failed: str


@dataclass(frozen=True)
class FailedResponse:
    """An HTTP error response, as a classifier sees it."""

    provider: Provider
    method: str
    endpoint: str  # the template, e.g. "/conversations/{conversation_id}"
    path: str  # the URL path requested
    status: int
    content_type: str
    body: Any  # parsed JSON, or None when the body is not JSON
    snippet: str  # the first printable characters of the body
    retry_after_s: float | None
    base_url: str
    ids: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_html(self) -> bool:
        return "html" in self.content_type.lower() or self.snippet.lstrip().startswith("<")

    def unexpected(self, expected: str = "a JSON body") -> UnexpectedResponseError:
        """An ``UnexpectedResponseError`` naming what came (status, content-type, snippet)."""
        content_type = self.content_type.split(";")[0] or "no content-type"
        message = unexpected_message(
            self.provider,
            self.method,
            self.path,
            got=f'{self.status} {content_type} "{self.snippet}"',
            expected=expected,
            base_url=self.base_url,
        )
        return UnexpectedResponseError(
            message, provider=self.provider, code=f"{self.provider}_unexpected_response"
        )


Classifier = Callable[[FailedResponse], ProviderError]


@dataclass(frozen=True)
class Reply:
    """A successful answer: status and parsed JSON body (None when empty or ignored)."""

    status: int
    body: Any
    path: str = ""


def body_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The first ``limit`` printable characters of a body, whitespace collapsed."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text[: limit * 4])
    collapsed = " ".join(printable.split())
    return collapsed if len(collapsed) <= limit else collapsed[:limit] + "…"


def provider_title(provider: Provider) -> str:
    return provider.capitalize()


class JsonHttpClient:
    """An ``httpx.AsyncClient`` speaking JSON to one provider, raising only ``ProviderError``."""

    def __init__(
        self,
        *,
        provider: Provider,
        base_url: str,
        headers: Mapping[str, str],
        classify: Classifier,
        events: LogEvents,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        observer: Observer | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.provider: Provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._classify = classify
        self._events = events
        self._observer = observer
        self._secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=dict(headers),
            transport=transport,
            timeout=timeout_s,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool; calling it again does nothing."""
        if not self._client.is_closed:
            await self._client.aclose()

    async def request(
        self,
        method: str,
        endpoint: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        idempotent: bool,
        expect: Expect = "json",
        ids: Mapping[str, str | None] | None = None,
    ) -> Reply:
        """Send one call, retrying per the policy: any retryable error when ``idempotent``,
        otherwise only errors that show the provider did not act (``is_unprocessed``)."""

        async def attempt() -> Reply:
            return await self.send_once(
                method,
                endpoint,
                path_params=path_params,
                params=params,
                json_body=json_body,
                expect=expect,
                ids=ids,
            )

        async def should_retry(error: ProviderError) -> bool:
            return idempotent or is_unprocessed(error)

        return await self.retrying(
            attempt, should_retry=should_retry, method=method, endpoint=endpoint
        )

    async def retrying(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        should_retry: Callable[[ProviderError], Awaitable[bool]],
        method: str,
        endpoint: str,
    ) -> T:
        """Run ``attempt`` until it succeeds, the policy's attempts are used up, or an error is
        not one of ``retry.retry_on`` or ``should_retry`` declines it."""
        number = 1
        while True:
            try:
                return await attempt()
            except ProviderError as error:
                will_retry = (
                    number < self.retry.attempts
                    and isinstance(error, self.retry.retry_on)
                    and await should_retry(error)
                )
                _log.warning(
                    self._events.request_failed,
                    method=method,
                    endpoint=endpoint,
                    status=error.status,
                    code=error.code,
                    error=error.message,
                    attempt=number,
                    will_retry=will_retry,
                )
                if not will_retry:
                    raise
                delay_s = self.retry.delay_s(number, error)
                _log.info(
                    self._events.retrying,
                    method=method,
                    endpoint=endpoint,
                    code=error.code,
                    attempt=number + 1,
                    delay_s=round(delay_s, 3),
                )
                await self.retry.sleep(delay_s)
                number += 1

    async def send_once(
        self,
        method: str,
        endpoint: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        expect: Expect = "json",
        ids: Mapping[str, str | None] | None = None,
    ) -> Reply:
        """One HTTP exchange, translated: a ``Reply`` or a ``ProviderError`` ``from`` the cause."""
        path = endpoint.format_map({k: quote(v, safe="") for k, v in (path_params or {}).items()})
        request = self._client.build_request(method, path, params=params, json=json_body)
        started = time.perf_counter()
        status: int | None = None
        try:
            response = await self._client.send(request)
            status = response.status_code
        except httpx.RequestError as exc:
            raise self._transport_error(request, exc) from exc
        finally:
            self._observe(endpoint, status, time.perf_counter() - started)
        known_ids = {k: v for k, v in {**(path_params or {}), **(ids or {})}.items() if v}
        return self._read(response, method, endpoint, known_ids, expect)

    def _read(
        self,
        response: httpx.Response,
        method: str,
        endpoint: str,
        ids: Mapping[str, str],
        expect: Expect,
    ) -> Reply:
        status, path = response.status_code, response.request.url.path
        if status >= 400:
            raise self._stamp(
                self._classify(self._failed(response, method, endpoint, ids)), response
            )
        if expect == "none" or status in (204, 304):
            return Reply(status, None, path)
        if 300 <= status < 400:
            where = response.headers.get("location", "elsewhere")
            raise self.unexpected(response, f"a redirect to {body_snippet(where)}", "a JSON body")
        if not response.content.strip():
            if expect == "optional":
                return Reply(status, None, path)
            raise self.unexpected(response, "an empty body", "a JSON body")
        try:
            return Reply(status, response.json(), path)
        except ValueError as exc:
            raise self.unexpected(response, _describe_body(response), "a JSON body") from exc

    def _failed(
        self, response: httpx.Response, method: str, endpoint: str, ids: Mapping[str, str]
    ) -> FailedResponse:
        try:
            body: Any = response.json() if response.content.strip() else None
        except ValueError:
            body = None
        return FailedResponse(
            provider=self.provider,
            method=method,
            endpoint=endpoint,
            path=response.request.url.path,
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            body=body,
            snippet=body_snippet(response.text),
            retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            base_url=self.base_url,
            ids=ids,
        )

    def unexpected(
        self, response: httpx.Response, got: str, expected: str
    ) -> UnexpectedResponseError:
        """The error for an answer that is not what the API returns, naming what came instead."""
        request = response.request
        message = unexpected_message(
            self.provider,
            request.method,
            request.url.path,
            got=f"{response.status_code} {got}",
            expected=expected,
            base_url=self.base_url,
        )
        error = UnexpectedResponseError(
            message, provider=self.provider, code=f"{self.provider}_unexpected_response"
        )
        return self._stamp(error, response)

    def _stamp(self, error: E, response: httpx.Response) -> E:
        error.status = error.status or response.status_code
        error.method = error.method or response.request.method
        error.url = error.url or _public_url(str(response.request.url))
        return self._redacted(error)

    def _redacted(self, error: E) -> E:
        for secret in self._secrets:
            error.message = error.message.replace(secret, "***")
        error.args = (error.message,)
        return error

    def _transport_error(self, request: httpx.Request, exc: httpx.RequestError) -> ProviderError:
        name = provider_title(self.provider)
        method, path = request.method, request.url.path
        url = _public_url(str(request.url))
        if isinstance(exc, httpx.TimeoutException):
            error: ProviderError = ProviderTimeoutError(
                f"{name} did not answer {method} {path} within {self.timeout_s:g} s"
                f" ({type(exc).__name__}); it may be overloaded, try again later.",
                provider=self.provider,
                request_sent=not isinstance(exc, _NOT_SENT),
                method=method,
                url=url,
            )
        else:
            detail = body_snippet(str(exc)) or "no detail"
            error = TransportError(
                f"Could not reach {name} for {method} {path} ({type(exc).__name__}: {detail});"
                f" check {URL_SETTING[self.provider]} ({_public_url(self.base_url)}) and the network.",
                provider=self.provider,
                code=unavailable_code(self.provider),
                request_sent=not isinstance(exc, _NOT_SENT),
                method=method,
                url=url,
            )
        return self._redacted(error)

    def _observe(self, endpoint: str, status: int | None, duration_s: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(self.provider, endpoint, status, duration_s)
        except Exception as exc:  # a metrics bug must not fail a provider call
            _log.error(self._events.observer_failed, endpoint=endpoint, error=repr(exc))


def unexpected_message(
    provider: Provider, method: str, path: str, *, got: str, expected: str, base_url: str
) -> str:
    """'Tavus answered GET /v2/x with 404 text/html "<html>…" where a JSON body was expected…'."""
    return (
        f"{provider_title(provider)} answered {method} {path} with {got} where {expected} was"
        f" expected; check {URL_SETTING[provider]} (now {_public_url(base_url)})."
    )


def _describe_body(response: httpx.Response) -> str:
    content_type = response.headers.get("content-type", "no content-type").split(";")[0]
    return f'{content_type} "{body_snippet(response.text)}"'


def _public_url(url: str) -> str:
    """The URL without user info or query, fit for a message."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "an invalid URL"
    return str(parsed.copy_with(username=None, password=None, query=None))


class ProviderClient:
    """What every provider client shares around its `JsonHttpClient`: `base_url`, a repr without
    the key, `async with`, and an idempotent `aclose()`."""

    _http: JsonHttpClient

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; calling it again does nothing."""
        await self._http.aclose()
