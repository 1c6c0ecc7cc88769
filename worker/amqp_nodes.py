"""The broker nodes named by `AMQP_URL`: one AMQP URL, or a cluster's nodes as a comma-separated
list, parsed and checked once into `AmqpNodes`; and how a URL or a list is shown (password hidden).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("amqp", "amqps")
ENCODING_HINT = "a ',' or '@' in a user or password must be percent-encoded (%2C, %40)"


class AmqpUrlError(ValueError):
    """AMQP_URL is malformed: the one-line message names the bad entry, its password hidden."""


@dataclass(frozen=True)
class AmqpNode:
    """One broker node: its full URL (with the password: never log it) and where it listens."""

    url: str
    host: str
    port: int

    @property
    def display(self) -> str:
        """The URL with its password replaced by ***."""
        return _hide_password(self.url)

    def passwords(self) -> list[str]:
        """The password as the URL spells it and, when percent-encoded, as it is (for redaction)."""
        password = urlsplit(self.url).password
        return list(dict.fromkeys((password, unquote(password)))) if password else []


@dataclass(frozen=True)
class AmqpNodes:
    """The nodes of one broker (a single node or a cluster's), in the order AMQP_URL lists them."""

    nodes: tuple[AmqpNode, ...]

    @classmethod
    def parse(cls, value: str) -> AmqpNodes:
        """Parse `amqp://u:p@host:port/vhost[,amqp://…]`; AmqpUrlError names the first bad entry."""
        entries = value.split(",")
        if not value.strip():
            raise AmqpUrlError("AMQP_URL is empty: set it to amqp://user:password@host:5672/")
        return cls(tuple(_parse_entry(e.strip(), i, len(entries)) for i, e in enumerate(entries)))

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[AmqpNode]:
        return iter(self.nodes)

    def __getitem__(self, index: int) -> AmqpNode:
        return self.nodes[index]

    @property
    def display(self) -> str:
        """The list as AMQP_URL spells it, every password replaced by ***."""
        return ",".join(node.display for node in self.nodes)

    def passwords(self) -> list[str]:
        """Every node's password (for the log redactor), each once."""
        return list(dict.fromkeys(p for node in self.nodes for p in node.passwords()))

    def with_query(self, **params: str | float) -> AmqpNodes:
        """The same nodes with these query parameters set on every URL (e.g. name=,
        reconnect_interval=)."""
        return AmqpNodes(tuple(_with_query(node, params) for node in self.nodes))

    @property
    def url(self) -> str:
        """The comma-separated list (with passwords), as AMQP_URL takes it."""
        return ",".join(node.url for node in self.nodes)


def parse_nodes(value: str | AmqpNodes) -> AmqpNodes:
    """`value` as AmqpNodes (parsed when it is a string)."""
    return value if isinstance(value, AmqpNodes) else AmqpNodes.parse(value)


def display_url(url: str) -> str:
    """An AMQP URL, or a comma-separated list of them, with every password replaced by ***.

    Never raises, whatever the text: it also shows entries that do not parse.
    """
    return ",".join(_hide_password(entry) for entry in url.split(","))


def _parse_entry(entry: str, index: int, count: int) -> AmqpNode:
    where = f"AMQP_URL entry {index + 1} of {count}" if count > 1 else "AMQP_URL"

    def bad(problem: str) -> AmqpUrlError:
        shown = f" ({_hide_password(entry)})" if entry else ""
        return AmqpUrlError(f"{where}{shown} {problem}")

    if not entry:
        raise bad("is empty: remove the stray comma")
    if re.search(r"\s", entry):
        raise bad("contains whitespace")
    if "://" not in entry:
        raise bad(f"is not an amqp:// or amqps:// URL ({ENCODING_HINT})")
    parts = urlsplit(entry)
    if parts.scheme.lower() not in SCHEMES:
        raise bad(f"has scheme '{parts.scheme}': use amqp:// or amqps://")
    if not parts.hostname:
        raise bad(f"has no host ({ENCODING_HINT})")
    try:
        port = parts.port
    except ValueError:
        digits = parts.netloc.rsplit(":", 1)[-1].isdigit()
        hint = "" if digits else f" ({ENCODING_HINT})"
        raise bad(f"has a port that is not a number from 1 to 65535{hint}") from None
    if port == 0:
        raise bad("has port 0: give the node's AMQP port, e.g. 5672")
    default_port = 5671 if parts.scheme.lower() == "amqps" else 5672
    return AmqpNode(url=entry, host=parts.hostname, port=port or default_port)


def _with_query(node: AmqpNode, params: dict[str, str | float]) -> AmqpNode:
    parts = urlsplit(node.url)
    query = dict(parse_qsl(parts.query)) | {k: str(v) for k, v in params.items()}
    return AmqpNode(urlunsplit(parts._replace(query=urlencode(query))), node.host, node.port)


def _hide_password(entry: str) -> str:
    """One entry with the password hidden, even when the entry itself is malformed."""
    scheme, sep, rest = entry.partition("://")
    if not sep:
        scheme, rest = "", entry
    prefix = f"{scheme}://" if sep else ""
    if "@" in rest:
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{prefix}{creds.split(':', 1)[0]}:***@{host}"
        if not sep:  # "pass@host": the tail of a password cut at an unencoded comma
            return f"***@{host}"
        return entry
    # No "@": "user:pass" cut at an unencoded comma looks like host:port with a port of letters.
    netloc, slash, path = rest.partition("/")
    host, colon, port = netloc.partition(":")
    if colon and not port.isdigit():
        return f"{prefix}{host}:***{slash}{path}"
    return entry
