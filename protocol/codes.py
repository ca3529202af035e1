"""Product-code parsing: turn a decoded barcode (symbology + text) into a product, a member token or a reason.

Pure: no I/O, no imports beyond the standard library, never raises from `classify` or
`parse_digital_link`. Every product is normalised to a GTIN-14 with a valid GS1 check digit.
A rejection's `detail` describes the *shape* of the input (lengths, positions), never its
content: a scanned payload may be personal data and rejections end up in logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

MAX_TEXT = 4096

REASONS = (
    "empty",
    "too_long",
    "unknown_format",
    "bad_check_digit",
    "bad_length",
    "foreign_url",
    "bad_digital_link",
    "unsupported_symbology",
)

GTIN_LENGTHS = (8, 12, 13, 14)


@dataclass(frozen=True)
class Product:
    gtin: str  # always 14 digits (GTIN-14) with a valid GS1 check digit
    source: str  # "ean13"|"ean8"|"upca"|"upce"|"itf14"|"qr-numeric"|"digital-link"
    qualifiers: tuple[tuple[str, str], ...] = ()  # Digital Link key qualifiers, e.g. (("10", "LOT1"),)


@dataclass(frozen=True)
class MemberCandidate:
    token: str  # compact JWS as scanned; signature and claims are verified elsewhere


@dataclass(frozen=True)
class Unrecognised:
    reason: str  # one of REASONS
    detail: str = ""  # short and safe: never contains the scanned payload


# --- GS1 check digits -------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts "²" and "٣"


def _is_digits(text: str) -> bool:
    return _DIGITS.fullmatch(text) is not None


def gtin_check_digit(body: str) -> int:
    """GS1 mod-10 check digit of `body` (the digits before the check digit).

    Weights alternate 3, 1, 3, ... starting from the rightmost body digit, which is what
    makes the same routine serve GTIN-8/12/13/14 and left-padding with zeros harmless.
    """
    if not _is_digits(body):
        raise ValueError("body must be ASCII digits")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def is_valid_gtin(digits: str) -> bool:
    """True for an 8, 12, 13 or 14 digit string whose last digit is its GS1 check digit."""
    if not isinstance(digits, str) or len(digits) not in GTIN_LENGTHS or not _is_digits(digits):
        return False
    return gtin_check_digit(digits[:-1]) == int(digits[-1])


def to_gtin14(digits: str) -> str:
    """Left-pad a valid GTIN-8/12/13/14 to 14 digits; ValueError if it is not a valid GTIN."""
    if not is_valid_gtin(digits):
        raise ValueError("not a valid GTIN-8/12/13/14")
    return digits.rjust(14, "0")


# --- UPC-E ------------------------------------------------------------------------------


def _upce_to_upca_body(number_system: str, six: str) -> str:
    """The 11 UPC-A digits (without check) that a UPC-E body stands for.

    The last of the six digits says where the manufacturer/product zeros were suppressed
    (GS1 General Specifications, UPC-E zero suppression).
    """
    d1, d2, d3, d4, d5, d6 = six
    if d6 in "012":
        middle = d1 + d2 + d6 + "0000" + d3 + d4 + d5
    elif d6 == "3":
        middle = d1 + d2 + d3 + "00000" + d4 + d5
    elif d6 == "4":
        middle = d1 + d2 + d3 + d4 + "00000" + d5
    else:
        middle = d1 + d2 + d3 + d4 + d5 + "0000" + d6
    return number_system + middle


def expand_upce(code: str) -> str:
    """Expand an 8-digit UPC-E (number system 0/1, six digits, check) to its 12-digit UPC-A.

    Raises ValueError for a wrong length, non-digits, another number system or a check
    digit that does not match the expanded UPC-A.
    """
    if not isinstance(code, str) or len(code) != 8 or not _is_digits(code):
        raise ValueError("UPC-E must be 8 ASCII digits")
    if code[0] not in "01":
        raise ValueError("UPC-E number system must be 0 or 1")
    body = _upce_to_upca_body(code[0], code[1:7])
    if gtin_check_digit(body) != int(code[7]):
        raise ValueError("UPC-E check digit does not match")
    return body + code[7]


# --- GS1 Digital Link -------------------------------------------------------------------

# Key qualifiers of GTIN (AI 01) in the only order the Digital Link standard allows:
# 22 (consumer product variant), 10 (batch/lot), 21 (serial).
_QUALIFIER_ORDER = ("22", "10", "21")
_QUALIFIER_MAX = 20  # AIs 22, 10 and 21 are all "X..20"
# GS1 AI encodable character set 82 (the only characters allowed in AIs 10/21/22).
_CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
# A qualifier value: every "%" must start a two-hex-digit escape.
_PERCENT_ENCODED = re.compile(r"(?:[^%]|%[0-9A-Fa-f]{2})*", re.DOTALL)
# Scheme, authority, path; query and fragment are ignored (they can carry data attributes
# the kiosk does not use). Parsed by hand rather than urlsplit, which silently drops tabs
# and newlines and would make a tampered URL look clean.
_URL = re.compile(r"(?i:https?)://([^/?#]*)([^?#]*)(?:[?#].*)?", re.DOTALL)


def _is_printable_ascii(text: str) -> bool:
    return all("!" <= ch <= "~" for ch in text)


def _parse_dl_tail(tail: list[str]) -> Product | Unrecognised:
    """Parse `{gtin}[/22/v][/10/v][/21/v]` (the path segments after a "01" segment)."""
    if not tail:
        return Unrecognised("bad_digital_link", "no GTIN after /01/")
    gtin, rest = tail[0], tail[1:]
    if len(gtin) not in GTIN_LENGTHS or not _is_digits(gtin):
        return Unrecognised("bad_digital_link", f"GTIN segment is not 8/12/13/14 digits (length {len(gtin)})")
    if not is_valid_gtin(gtin):
        return Unrecognised("bad_check_digit", f"GTIN-{len(gtin)} check digit mismatch")
    if len(rest) % 2:
        return Unrecognised("bad_digital_link", "qualifier without a value")
    qualifiers: list[tuple[str, str]] = []
    last_rank = -1
    for i in range(0, len(rest), 2):
        key, raw = rest[i], rest[i + 1]
        if key not in _QUALIFIER_ORDER:
            return Unrecognised("bad_digital_link", f"unsupported qualifier at position {i // 2 + 1}")
        rank = _QUALIFIER_ORDER.index(key)
        if rank <= last_rank:
            return Unrecognised("bad_digital_link", f"qualifier {key} out of order or repeated")
        last_rank = rank
        if not _PERCENT_ENCODED.fullmatch(raw):
            return Unrecognised("bad_digital_link", f"qualifier {key} has a malformed percent escape")
        try:
            value = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return Unrecognised("bad_digital_link", f"qualifier {key} is not valid percent-encoded UTF-8")
        if not 1 <= len(value) <= _QUALIFIER_MAX or not set(value) <= _CSET82:
            return Unrecognised("bad_digital_link", f"qualifier {key} value not 1-20 GS1 characters")
        qualifiers.append((key, value))
    return Product(to_gtin14(gtin), "digital-link", tuple(qualifiers))


def parse_digital_link(uri: str) -> Product | Unrecognised:
    """Parse a GS1 Digital Link URI with a GTIN primary key; never raises.

    `https://any.host[/custom/path]/01/{gtin}[/22/{cpv}][/10/{lot}][/21/{serial}][?query]`.
    An http(s) URL without a "01" path segment is a foreign URL: the kiosk never opens it.
    """
    try:
        return _parse_digital_link(uri)
    except Exception:  # defensive: the contract is "never raise on scanned input"
        return Unrecognised("bad_digital_link", "unparseable URI")


def _parse_digital_link(uri: str) -> Product | Unrecognised:
    if not isinstance(uri, str):
        return Unrecognised("unknown_format", "not text")
    uri = uri.strip()
    match = _URL.fullmatch(uri)
    if match is None:
        return Unrecognised("unknown_format", "not an http(s) URL")
    authority, path = match.groups()
    segments = path.split("/")[1:]  # path is "" or starts with "/"
    if segments and segments[-1] == "":
        segments.pop()  # tolerate one trailing slash, as resolvers do
    candidates = [i for i, seg in enumerate(segments) if seg == "01"]
    if not candidates:
        return Unrecognised("foreign_url", "http(s) URL without a /01/ GTIN key")
    if not authority or not _is_printable_ascii(uri):
        return Unrecognised("bad_digital_link", "missing host or characters outside printable ASCII")
    # A custom path prefix or a lot value may itself be "01": try each "01" segment from the
    # left and take the first reading that parses; otherwise report the most specific error.
    failures = []
    for i in candidates:
        result = _parse_dl_tail(segments[i + 1 :])
        if isinstance(result, Product):
            return result
        failures.append(result)
    for failure in failures:
        if failure.reason == "bad_check_digit":
            return failure
    return failures[0]


# --- classification ---------------------------------------------------------------------

# Compact JWS: base64url header (a JSON object, so it starts with "eyJ" = '{"'), payload,
# non-empty signature. Unsigned tokens are not member tokens.
_JWS = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_URL_SCHEME = re.compile(r"(?i:https?)://")
# GS1-128 element string starting with AI (01): optional symbology identifier "]C1" or a
# leading FNC1 (transmitted as GS, 0x1D), then "01" and the 14-digit GTIN.
_GS1_128_GTIN = re.compile(r"(?:\]C1|\x1d)?01([0-9]{14})", re.DOTALL)

_EAN_LENGTHS = {"ean13": 13, "ean8": 8, "upca": 12}


def _fixed_length_gtin(source: str, text: str, length: int) -> Product | Unrecognised:
    if not _is_digits(text):
        return Unrecognised("unknown_format", f"{source} must be digits")
    if len(text) != length:
        return Unrecognised("bad_length", f"{source} needs {length} digits, got {len(text)}")
    if not is_valid_gtin(text):
        return Unrecognised("bad_check_digit", f"{source} check digit mismatch")
    return Product(to_gtin14(text), source)


def _classify_upce(text: str) -> Product | Unrecognised:
    if not _is_digits(text):
        return Unrecognised("unknown_format", "upce must be digits")
    if len(text) == 6:
        # Bare six digits (some scanners drop number system and check): assume system 0.
        body = _upce_to_upca_body("0", text)
        return Product(to_gtin14(body + str(gtin_check_digit(body))), "upce")
    if len(text) != 8:
        return Unrecognised("bad_length", f"upce needs 8 (or 6) digits, got {len(text)}")
    if text[0] not in "01":
        return Unrecognised("unknown_format", "upce number system must be 0 or 1")
    try:
        upca = expand_upce(text)
    except ValueError:
        return Unrecognised("bad_check_digit", "upce check digit mismatch")
    return Product(to_gtin14(upca), "upce")


def _classify_code128(text: str) -> Product | Unrecognised:
    match = _GS1_128_GTIN.match(text)
    if match is None:
        return Unrecognised("unknown_format", "code128 without a leading GS1 AI (01)")
    gtin = match.group(1)
    if not is_valid_gtin(gtin):
        return Unrecognised("bad_check_digit", "GS1-128 GTIN check digit mismatch")
    return Product(gtin, "code128")


def _classify_qr(text: str) -> Product | MemberCandidate | Unrecognised:
    if _JWS.fullmatch(text):
        return MemberCandidate(text)
    if _URL_SCHEME.match(text):
        return parse_digital_link(text)
    if _is_digits(text):
        if len(text) not in GTIN_LENGTHS:
            return Unrecognised("unknown_format", f"numeric text of length {len(text)}")
        if not is_valid_gtin(text):
            return Unrecognised("bad_check_digit", f"numeric GTIN-{len(text)} check digit mismatch")
        return Product(to_gtin14(text), "qr-numeric")
    return Unrecognised("unknown_format", "QR text is not a product or member code")


def classify(symbology: str, text: str) -> Product | MemberCandidate | Unrecognised:
    """Classify one decoded code; never raises, whatever `text` contains."""
    try:
        return _classify(symbology, text)
    except Exception:  # defensive: the contract is "never raise on scanned input"
        return Unrecognised("unknown_format", "unclassifiable input")


def _classify(symbology: str, text: str) -> Product | MemberCandidate | Unrecognised:
    if not isinstance(text, str):
        return Unrecognised("unknown_format", "not text")
    # Length first: it bounds all further work on hostile input.
    if len(text) > MAX_TEXT:
        return Unrecognised("too_long", f"{len(text)} characters > {MAX_TEXT}")
    text = text.strip()
    if not text:
        return Unrecognised("empty")
    name = symbology.lower() if isinstance(symbology, str) else ""
    if name in _EAN_LENGTHS:
        return _fixed_length_gtin(name, text, _EAN_LENGTHS[name])
    if name == "itf14":
        # Interleaved 2 of 5 of other lengths are not products (and zbar can hallucinate
        # short I25 codes in noise), so only the 14-digit form counts.
        return _fixed_length_gtin("itf14", text, 14)
    if name == "upce":
        return _classify_upce(text)
    if name == "code128":
        return _classify_code128(text)
    if name == "qr":
        return _classify_qr(text)
    return Unrecognised("unsupported_symbology", "symbology not handled")
