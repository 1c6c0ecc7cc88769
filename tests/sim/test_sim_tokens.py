"""The simulator's HS256 JWTs and endpoint patterns, the two small parsers clients depend on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tavus.sim.faults import Endpoint
from tavus.sim.tokens import InvalidTokenError, decode_hs256, encode_hs256

claims_strategy = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(st.integers(), st.booleans(), st.text(max_size=20), st.none()),
    max_size=6,
)


@given(claims=claims_strategy, key=st.text(min_size=1, max_size=40))
def test_tokens_round_trip_with_the_signing_key(claims: dict[str, object], key: str) -> None:
    """Any claims signed with a key decode back unchanged with that key."""
    assert decode_hs256(encode_hs256(claims, key), key) == claims


def test_tokens_are_standard_hs256_jwts() -> None:
    """The signature is HMAC-SHA256 over header.payload, verifiable by any JWT library."""
    token = encode_hs256({"r": "room"}, "secret")
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    assert header == {"alg": "HS256", "typ": "JWT"}
    expected = hmac.new(b"secret", f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature_b64


def test_tokens_signed_with_another_key_or_tampered_are_rejected() -> None:
    """A foreign key, a changed payload or a malformed token raise InvalidTokenError."""
    token = encode_hs256({"r": "room", "o": False}, "right")
    with pytest.raises(InvalidTokenError):
        decode_hs256(token, "wrong")
    header, _, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"r":"room","o":true}').rstrip(b"=").decode()
    with pytest.raises(InvalidTokenError):
        decode_hs256(f"{header}.{forged}.{signature}", "right")
    with pytest.raises(InvalidTokenError):
        decode_hs256("only.two", "right")


@pytest.mark.parametrize(
    ("spec", "method", "path", "expected"),
    [
        ("POST /v2/conversations", "POST", "/v2/conversations", True),
        ("POST /v2/conversations", "POST", "/v2/conversations/c1/end", False),
        ("POST /v2/conversations", "GET", "/v2/conversations", False),
        ("POST /v2/conversations/{id}/end", "POST", "/v2/conversations/c123/end", True),
        ("* /v1/rooms/*", "DELETE", "/v1/rooms/bot-1", True),
        ("GET /v2/**", "GET", "/v2/personas/p1", True),
        ("get /v2/replicas", "GET", "/v2/replicas/", True),
    ],
)
def test_endpoint_patterns(spec: str, method: str, path: str, expected: bool) -> None:
    """Fault endpoints match by method (or *) and path with {name}/* segments and ** tails."""
    assert Endpoint.parse(spec).matches(method, path) is expected


def test_endpoint_without_method_is_rejected() -> None:
    """An endpoint spec must be "METHOD /path"; anything else is a clear ValueError."""
    with pytest.raises(ValueError, match="METHOD /path"):
        Endpoint.parse("/v2/conversations")
