"""What a decoded code is (`Code`), the symbology names, and the pyzbar single-pass `decode`.

Pure (no camera, no files) and never raises: a frame it cannot use (None, empty, wrong
dtype or layout) or a failure inside OpenCV/zbar yields `[]` instead of an exception, so one
bad frame cannot kill the scan loop. Only the requested symbologies are enabled, because the
enabled set dominates a decoder's cost (see docs/decoders.md).

The two backends (zxing-cpp, the default, and pyzbar) with inverted-code handling, the
live loop's decoder and the still-image union live in `kiosk.decoders`; `decode` here is
pyzbar's plain pass on the frame as given. `decode_file`, at the bottom, is the one function
here that does I/O: it decodes a still image the way `python -m kiosk decode` does.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np
from pyzbar import pyzbar
from pyzbar.pyzbar import ZBarSymbol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Code:
    symbology: str  # "qr", "ean13", "ean8", "upca", "upce", "itf14" or "code128"
    text: str


SYMBOLOGIES = ("qr", "ean13", "ean8", "upca", "upce", "itf14")  # default enabled set

# Our names <-> zbar's. ITF-14 is Interleaved 2 of 5 restricted to 14 digits (see below).
_ZBAR_BY_NAME = {
    "qr": ZBarSymbol.QRCODE,
    "ean13": ZBarSymbol.EAN13,
    "ean8": ZBarSymbol.EAN8,
    "upca": ZBarSymbol.UPCA,
    "upce": ZBarSymbol.UPCE,
    "itf14": ZBarSymbol.I25,
    "code128": ZBarSymbol.CODE128,
}
_NAME_BY_ZBAR = {symbol.name: name for name, symbol in _ZBAR_BY_NAME.items()}

SUPPORTED_SYMBOLOGIES = tuple(_ZBAR_BY_NAME)  # every name `decode` accepts

_ITF14 = re.compile(r"[0-9]{14}")


def zbar_symbols(symbologies: Iterable[str]) -> list[ZBarSymbol]:
    """The zbar symbols for our names, in a fixed order; unknown names are ignored."""
    if isinstance(symbologies, str):
        symbologies = (symbologies,)  # a lone name, not an iterable of characters
    wanted = set(symbologies)
    return [symbol for name, symbol in _ZBAR_BY_NAME.items() if name in wanted]


def to_grey(frame) -> np.ndarray | None:
    """A C-contiguous (H, W) uint8 view of a BGR or grey uint8 frame, or None if unusable."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.size == 0:
        return None
    if frame.ndim == 2:
        grey = frame
    elif frame.ndim == 3 and frame.shape[2] == 3:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif frame.ndim == 3 and frame.shape[2] == 1:
        grey = frame[:, :, 0]
    else:
        return None  # BGRA, planar or other layouts are not what the camera gives us
    return np.ascontiguousarray(grey)


def _text(data: bytes) -> str:
    # zbar hands back bytes; non-UTF-8 payloads (e.g. Shift-JIS QR) must not raise.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _to_code(result) -> Code | None:
    name = _NAME_BY_ZBAR.get(getattr(result.type, "name", result.type))
    if name is None:
        return None
    text = _text(result.data)
    # zbar reports short Interleaved 2 of 5 reads in noise that are not there; a product
    # ITF is exactly 14 digits, so anything else is dropped here.
    if name == "itf14" and not _ITF14.fullmatch(text):
        return None
    return Code(name, text)


def decode(frame, symbologies: Iterable[str] = SYMBOLOGIES) -> list[Code]:
    """Codes in `frame` (BGR (H, W, 3) or grey (H, W) uint8), each (symbology, text) once.

    The result is sorted by (symbology, text) so the same codes give the same list whatever
    their position in the frame. Returns [] for unusable frames and on any decoder error.
    """
    try:
        symbols = zbar_symbols(symbologies)
        # pyzbar treats an empty symbol list as "enable everything": never pass one.
        if not symbols:
            return []
        grey = to_grey(frame)
        if grey is None:
            return []
        results = pyzbar.decode(grey, symbols=symbols)
        codes = {code for code in map(_to_code, results) if code is not None}
    except Exception as exc:  # one bad frame must not kill the scan loop
        # Type only: the message could quote payload bytes, which may be personal data.
        log.debug("frame decode failed: %s", type(exc).__name__)
        return []
    return sorted(codes, key=lambda code: (code.symbology, code.text))


# --- I/O --------------------------------------------------------------------------------


def decode_file(path, symbologies: Iterable[str] = SYMBOLOGIES) -> list[Code]:
    """Decode an image file as a still (both backends, both polarities; tools, tests and
    `python -m kiosk decode`); [] if it cannot be read."""
    from kiosk.decoders import decode_still  # kiosk.decoders imports this module

    try:
        frame = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    except Exception as exc:  # e.g. a path with a NUL byte
        log.debug("image read failed: %s", type(exc).__name__)
        return []
    return decode_still(frame, symbologies)
