"""The conversation languages Tavus knows, by the name Tavus takes (`properties.language`) and
their ISO 639-1 codes: one table, so a job's `language` means the same in every mode."""

from __future__ import annotations

# Tavus's name -> ISO 639-1 code ("multi": Deepgram's automatic detection; no single TTS code).
LANGUAGES: dict[str, str] = {
    "english": "en",
    "multilingual": "multi",
    "arabic": "ar",
    "bulgarian": "bg",
    "chinese": "zh",
    "croatian": "hr",
    "czech": "cs",
    "danish": "da",
    "dutch": "nl",
    "finnish": "fi",
    "french": "fr",
    "german": "de",
    "greek": "el",
    "hindi": "hi",
    "hungarian": "hu",
    "indonesian": "id",
    "italian": "it",
    "japanese": "ja",
    "korean": "ko",
    "malay": "ms",
    "norwegian": "no",
    "polish": "pl",
    "portuguese": "pt",
    "romanian": "ro",
    "russian": "ru",
    "slovak": "sk",
    "spanish": "es",
    "swedish": "sv",
    "tamil": "ta",
    "turkish": "tr",
    "ukrainian": "uk",
    "vietnamese": "vi",
}
_BY_CODE = {code: name for name, code in LANGUAGES.items()}


def language_name(value: str) -> str | None:
    """The Tavus name for a language given by name or ISO code, any case; None when unknown."""
    key = value.strip().lower()
    if key in LANGUAGES:
        return key
    return _BY_CODE.get(key)


def language_code(name: str) -> str:
    """The ISO 639-1 code of a Tavus language name (`multi` for multilingual)."""
    return LANGUAGES[name]
