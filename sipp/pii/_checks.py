"""Checksums that turn digit patterns into real identifiers (few false positives)."""

from __future__ import annotations

__all__ = ["bsn_valid", "dni_valid", "iban_valid", "luhn_valid", "nir_valid"]


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97."""
    text = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in text)
    return int(number) % 97 == 1


def dni_valid(value: str) -> bool:
    """Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter)."""
    body, letter = value[:-1], value[-1]
    if body[0] in "XYZ":
        body = str("XYZ".index(body[0])) + body[1:]
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(body) % 23] == letter


def bsn_valid(digits: str) -> bool:
    """Dutch BSN: the "11-proof" (weights 9..2 and -1)."""
    if digits == "0" * 9:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    return (total - int(digits[8])) % 11 == 0


def nir_valid(value: str) -> bool:
    """French NIR: 13 digits and a 2-digit key 97 - n mod 97 (Corsican 2A/2B not read)."""
    return 97 - int(value[:13]) % 97 == int(value[13:])
