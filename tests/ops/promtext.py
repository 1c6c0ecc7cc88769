"""Reading a Prometheus text page the way a scraper does."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def value(page: bytes | str, name: str, **labels: str) -> float | None:
    """The value of the sample `name{labels}` on the page, None when there is no such series."""
    text = page.decode() if isinstance(page, bytes) else page
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None
