"""The built-in pattern detector: emails, phone numbers, payment cards, IBANs, IP addresses
and national identifiers of selected countries.

Digit patterns are only reported when they pass their checksum (Luhn for cards, mod 97 for
IBANs, each country's rule for national IDs) or, for phone numbers, their length rules, so
order numbers and dates are rarely masked by mistake.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence

from sipp.errors import ConfigurationError
from sipp.pii._checks import bsn_valid, dni_valid, iban_valid, luhn_valid, nir_valid
from sipp.pii._spans import Span

__all__ = ["BUILTIN_ENTITIES", "NATIONAL_ID_COUNTRIES", "PatternDetector"]

BUILTIN_ENTITIES = ("EMAIL", "PHONE", "PAYMENT_CARD", "IBAN", "IP_ADDRESS", "NATIONAL_ID")

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
)
# E.164 written with optional separators: + country code and 8..15 digits in all
_PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9](?:[ .\-]?\(?\d\)?){6,16}(?!\w)")
# North American national form: (415) 555-0134, 415-555-0134, 415.555.0134
_PHONE_NANP = re.compile(r"(?<![\w(+-])(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[-. ])\d{3}[-. ]\d{4}(?!\w)")
# trunk-prefix national forms (UK, DE, FR, ES-style 0...): 020 7946 0958, 06 12 34 56 78
_PHONE_TRUNK = re.compile(r"(?<![\w+.-])0\d{1,4}(?:[ \-/.]?\d{2,4}){2,5}(?![\w])")
# compact, 4-4-4-4(-3) with one kind of separator, or 4-6-4/5 (Amex, Diners)
_CARD = re.compile(
    r"(?<![\w-])(?:[2-6]\d{12,18}|[2-6]\d{3}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?"
    r"|3\d{3}([ -])\d{6}\2\d{4,5})(?![\w-])"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![a-z0-9])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\w)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
    r"(?![\w:])"
)

# IBAN lengths of common countries (others: mod 97 over 15..34 characters)
_IBAN_LENGTHS = {
    "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18,
    "FR": 27, "GB": 22, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "SE": 24,
}


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _national_patterns() -> dict[str, tuple[re.Pattern[str], Callable[[str], bool]]]:
    def ssn(value: str) -> bool:
        area, group, serial = value[:3], value[4:6], value[7:]
        return area not in ("000", "666") and area[0] != "9" and group != "00" and \
            serial != "0000"

    return {
        # US Social Security Number, written 123-45-6789
        "US": (re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])"), ssn),
        # UK National Insurance number: AB 12 34 56 C
        "GB": (re.compile(
            r"(?<!\w)(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
            r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)"), lambda v: True),
        # Spanish DNI / NIE with its check letter
        "ES": (re.compile(r"(?<!\w)(?:\d{8}|[XYZ]\d{7})-?[A-Z](?!\w)"),
               lambda v: dni_valid(v.replace("-", ""))),
        # French NIR (social security number) with its key
        "FR": (re.compile(r"(?<![\w])[12](?: ?\d){12} ?\d{2}(?!\w)"),
               lambda v: nir_valid(_digits(v))),
        # Dutch BSN (11-proof)
        "NL": (re.compile(r"(?<![\w.-])\d{4}\.?\d{2}\.?\d{3}(?![\w-])"),
               lambda v: bsn_valid(_digits(v))),
    }


_NATIONAL = _national_patterns()
NATIONAL_ID_COUNTRIES = tuple(_NATIONAL)


class PatternDetector:
    """Regex + checksum detection of the built-in entity types.

    ``entities``: which of :data:`BUILTIN_ENTITIES` to report (default all);
    ``countries``: whose national-ID patterns ``NATIONAL_ID`` uses (ISO 3166 alpha-2 codes
    from :data:`NATIONAL_ID_COUNTRIES`; default ``("US",)``).
    """

    def __init__(
        self, entities: Sequence[str] | None = None, countries: Sequence[str] = ("US",)
    ) -> None:
        chosen = tuple(entities) if entities is not None else BUILTIN_ENTITIES
        for name in chosen:
            if name not in BUILTIN_ENTITIES:
                raise ConfigurationError(
                    f"pii entities: {name!r} is not a built-in type "
                    f"({', '.join(BUILTIN_ENTITIES)})"
                )
        if isinstance(countries, str):
            raise ConfigurationError("pii countries must be a list of country codes")
        for code in countries:
            if code not in _NATIONAL:
                raise ConfigurationError(
                    f"pii countries: no national-ID pattern for {code!r} "
                    f"(known: {', '.join(NATIONAL_ID_COUNTRIES)})"
                )
        self._entities = chosen
        self._countries = tuple(countries)

    @property
    def entities(self) -> Sequence[str]:
        return self._entities

    @property
    def countries(self) -> Sequence[str]:
        return self._countries

    def detect(self, text: str) -> list[Span]:
        spans: list[Span] = []
        want = set(self._entities)
        if "EMAIL" in want:
            spans += [Span(m.start(), m.end(), "EMAIL") for m in _EMAIL.finditer(text)]
        if "IBAN" in want:
            spans += self._ibans(text)
        if "PAYMENT_CARD" in want:
            for m in _CARD.finditer(text):
                digits = _digits(m.group())
                if 13 <= len(digits) <= 19 and luhn_valid(digits):
                    spans.append(Span(m.start(), m.end(), "PAYMENT_CARD"))
        if "IP_ADDRESS" in want:
            spans += self._ips(text)
        if "PHONE" in want:
            spans += self._phones(text)
        if "NATIONAL_ID" in want:
            for code in self._countries:
                pattern, check = _NATIONAL[code]
                spans += [Span(m.start(), m.end(), "NATIONAL_ID")
                          for m in pattern.finditer(text) if check(m.group())]
        return spans

    @staticmethod
    def _ibans(text: str) -> list[Span]:
        found: list[Span] = []
        for m in _IBAN.finditer(text):
            candidate = m.group()
            length = _IBAN_LENGTHS.get(candidate[:2])
            compact = candidate.replace(" ", "")
            if length is not None:
                if len(compact) < length:
                    continue
                # cut the match after `length` characters (ignoring spaces)
                seen = end = 0
                while seen < length:
                    seen += candidate[end] != " "
                    end += 1
                candidate, compact = candidate[:end], compact[:length]
            elif not 15 <= len(compact) <= 34:
                continue
            if iban_valid(compact):
                found.append(Span(m.start(), m.start() + len(candidate), "IBAN"))
        return found

    @staticmethod
    def _ips(text: str) -> list[Span]:
        found: list[Span] = []
        for m in _IPV4.finditer(text):
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            found.append(Span(m.start(), m.end(), "IP_ADDRESS"))
        for m in _IPV6.finditer(text):
            value = m.group()
            if sum(ch.isalnum() for ch in value) < 2:
                continue
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                continue
            found.append(Span(m.start(), m.end(), "IP_ADDRESS"))
        return found

    @staticmethod
    def _phones(text: str) -> list[Span]:
        found: list[Span] = []
        for m in _PHONE_INTL.finditer(text):
            if 8 <= len(_digits(m.group())) <= 15:
                found.append(Span(m.start(), m.end(), "PHONE"))
        found += [Span(m.start(), m.end(), "PHONE") for m in _PHONE_NANP.finditer(text)]
        for m in _PHONE_TRUNK.finditer(text):
            if 10 <= len(_digits(m.group())) <= 11:
                found.append(Span(m.start(), m.end(), "PHONE"))
        return found
