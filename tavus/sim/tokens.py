"""HS256 JWTs with the standard library (Daily meeting tokens and Tavus ``meeting_token``s), and
the mapping between Daily's long token property names and its abbreviated claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

# Daily's abbreviated claim names (daily-api.md §4).
CLAIM_NAMES: dict[str, str] = {
    "room_name": "r",
    "is_owner": "o",
    "user_name": "u",
    "user_id": "ud",
    "exp": "exp",
    "nbf": "nbf",
    "eject_at_token_exp": "ejt",
    "eject_after_elapsed": "eje",
    "start_video_off": "vo",
    "start_audio_off": "ao",
    "enable_screenshare": "ss",
    "enable_recording": "er",
    "lang": "uil",
    "permissions": "p",
}
PROPERTY_NAMES: dict[str, str] = {claim: name for name, claim in CLAIM_NAMES.items()}


class InvalidTokenError(ValueError):
    """The token is not a well-formed HS256 JWT signed with the given key."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidTokenError("a token segment is not base64url") from exc


def _json_segment(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def encode_hs256(claims: dict[str, Any], key: str) -> str:
    """A compact JWT (``header.payload.signature``) signed with HMAC-SHA256."""
    signing_input = _json_segment({"alg": "HS256", "typ": "JWT"}) + "." + _json_segment(claims)
    signature = hmac.new(key.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def decode_hs256(token: str, key: str) -> dict[str, Any]:
    """The claims of a token signed with ``key``; raises InvalidTokenError otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidTokenError("a JWT has three dot-separated segments")
    signing_input = (parts[0] + "." + parts[1]).encode("ascii", errors="replace")
    expected = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _b64url_decode(parts[2])):
        raise InvalidTokenError("the signature does not match")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
    except ValueError as exc:
        raise InvalidTokenError("a token segment is not JSON") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        raise InvalidTokenError("not an HS256 JWT with a claims object")
    return claims


def claims_from_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """Daily token properties under their abbreviated claim names (unknown names kept as is)."""
    return {CLAIM_NAMES.get(name, name): value for name, value in properties.items()}


def properties_from_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``claims_from_properties``, minus the bookkeeping claims ``d`` and ``iat``."""
    return {
        PROPERTY_NAMES.get(claim, claim): value
        for claim, value in claims.items()
        if claim not in ("d", "iat")
    }
