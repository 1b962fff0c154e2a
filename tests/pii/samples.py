"""One text per built-in entity type (and country), shared by the PII tests."""

from __future__ import annotations


def _nir(body: str) -> str:
    return f"{body} {97 - int(body.replace(' ', '')) % 97:02d}"


# (entity type, value, sentence around it)
SAMPLES: list[tuple[str, str]] = [
    ("EMAIL", "jane.doe+work@example.co.uk"),
    ("PHONE", "+44 20 7946 0958"),
    ("PHONE", "+14155550134"),
    ("PHONE", "(415) 555-0134"),
    ("PHONE", "020 7946 0958"),
    ("PHONE", "06 12 34 56 78"),
    ("PAYMENT_CARD", "4111 1111 1111 1111"),
    ("PAYMENT_CARD", "5500-0000-0000-0004"),
    ("PAYMENT_CARD", "378282246310005"),
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "GB82WEST12345698765432"),
    ("IBAN", "FR14 2004 1010 0505 0001 3M02 606"),
    ("IP_ADDRESS", "192.168.1.20"),
    ("IP_ADDRESS", "2001:db8::8a2e:370:7334"),
    ("NATIONAL_ID", "123-45-6789"),          # US SSN
    ("NATIONAL_ID", "AB 12 34 56 C"),        # GB NINO
    ("NATIONAL_ID", "12345678Z"),            # ES DNI
    ("NATIONAL_ID", _nir("1 85 05 78 006 084")),  # FR NIR
    ("NATIONAL_ID", "111222333"),            # NL BSN
]

COUNTRIES = ("US", "GB", "ES", "FR", "NL")


def sentence(value: str) -> str:
    return f"Please note {value} for the file."
