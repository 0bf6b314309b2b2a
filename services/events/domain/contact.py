"""Phone numbers (E.164, UK by default) and booking references people can read out."""

from __future__ import annotations

import secrets

import phonenumbers

# Crockford's base 32: no I, L, O or U, so a reference read over the phone is unambiguous.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class InvalidPhone(ValueError):
    """Raised when a phone number cannot be a real number."""


_TEXTABLE = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
}


def normalise_phone(raw: str, *, region: str = "GB") -> str:
    """The number in E.164 (+447700900123); a number without a country code is taken as ``region``'s."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhone(f"{raw!r} is not a phone number ({error})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{raw!r} is not a valid phone number")
    # The number is for texts: a landline would take the SMS opt-in and never receive one.
    if phonenumbers.number_type(number) not in _TEXTABLE:
        raise InvalidPhone(f"{raw!r} is not a mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def new_reference(prefix: str = "B", length: int = 7) -> str:
    """A short random reference, e.g. ``B7K3M9QX``; the store's unique index catches a clash."""
    # One read of the system's randomness for the lot; 32 divides 256, so each
    # character is still uniform.
    return prefix + "".join(_ALPHABET[byte % 32] for byte in secrets.token_bytes(length))
