"""Two decoder backends behind one interface (zxing-cpp, the default, and pyzbar), the live
loop's decoder, and the still-image union.

A backend is a callable object, `decoder(frame) -> list[Code]`: BGR or grey uint8 in, each
distinct (symbology, text) once, sorted; pure (no I/O, no state) and it never raises, so one
bad frame cannot end the scan loop. Both report the same names ("qr", "ean13", "ean8",
"upca", "upce", "itf14", "code128") and the same texts for the same symbol, so
`protocol.codes.classify` gives the same GTIN-14 whichever backend read it:

- zxing-cpp reports a UPC-A as a 13-digit EAN-13 with a leading 0; with "upca" enabled it
  becomes Code("upca", 12 digits), as zbar reports it. zxing-cpp 3 gives a UPC-E as its
  expanded 13 digits; the 8 digits on the symbol (what zbar gives) are reported instead.
- Interleaved 2 of 5 counts only as ITF-14 (exactly 14 digits): shorter reads are dropped.
- Texts are the payload as encoded (zxing-cpp `TextMode.Plain`): a GS1-128 is
  "01{gtin}..." from both backends, never the "(01)..." human-readable form.

Inverted (light-on-dark) codes, as phones in dark mode show them. zxing-cpp's own inverted
retry (`try_invert`: the binarised image is flipped, +0.2-0.3 ms at 640x480) covers QR and
other 2D codes but not linear ones (zxing-cpp issue #795); zbar has none. So a per-frame
decoder from `make_decoder` also decodes `cv2.bitwise_not(grey)`: zxing-cpp for linear
formats only, zbar for everything (twice its cost). The live loop (`make_live_decoder`)
spreads that extra work over frames (SpreadDecoder, AlternatingDecoder): a code stays in
view for many frames.

Still images (`decode_still`: `python -m kiosk decode`, bench/readrate.py) take the union
of both backends and both polarities, minus pyzbar reads that zxing-cpp contradicts at the
same place (see `union`). docs/decoders.md has the measurements behind these choices.
"""

from __future__ import annotations

import abc

import functools
import logging
import re
from dataclasses import dataclass
from typing import Callable, Iterable

import cv2
import numpy as np
import zxingcpp
from pyzbar import pyzbar

from kiosk.decode import SYMBOLOGIES, Code, to_grey, zbar_symbols
from kiosk.decode import _to_code as _zbar_to_code
from protocol.codes import Product, classify, expand_upce

log = logging.getLogger("kiosk.decode")

BACKENDS = ("zxing", "pyzbar")
# zxing-cpp: several times faster than zbar on the frames a kiosk sees most (no code in
# view) and reads more real photos, Shift-JIS QR payloads included; see docs/decoders.md.
DEFAULT_BACKEND = "zxing"

Decoder = Callable[[object], "list[Code]"]

_ITF14 = re.compile(r"[0-9]{14}")
# Linear (1D) symbologies: zxing-cpp's own inverted retry does not cover them, and a worn
# label can be misread as another valid code of them (a check digit does not prove much).
_LINEAR = frozenset({"ean13", "ean8", "upca", "upce", "itf14", "code128"})
_DIGITS = re.compile(r"[0-9]+")

# Our names -> zxing-cpp format names (looked up by name: the enum values differ between
# zxing-cpp 2.x and 3.x).
_ZXING_FORMAT_NAMES = {
    "qr": "QRCode",
    "ean13": "EAN13",
    "ean8": "EAN8",
    "upca": "UPCA",
    "upce": "UPCE",
    "itf14": "ITF",
    "code128": "Code128",
}


@dataclass(frozen=True)
class Read:
    """A code and where it was seen (x0, y0, x1, y1 in frame pixels)."""

    code: Code
    box: tuple[int, int, int, int]


def _sort(codes: Iterable[Code]) -> list[Code]:
    return sorted(set(codes), key=lambda code: (code.symbology, code.text))


def _names(symbologies: Iterable[str]) -> frozenset[str]:
    if isinstance(symbologies, str):
        symbologies = (symbologies,)  # a lone name, not an iterable of characters
    return frozenset(symbologies)


class _Backend(abc.ABC):
    """Common frame checks, error containment and de-duplication; subclasses read a grey frame."""

    name = ""

    def __init__(self, symbologies: Iterable[str]):
        self.symbologies = _names(symbologies)

    @abc.abstractmethod
    def _reads(self, grey: np.ndarray) -> list[Read]:
        """Read a usable grey frame; may raise (reads() contains it)."""

    def reads(self, frame) -> list[Read]:
        """Codes with their boxes, each distinct code once; [] for unusable frames or on any error."""
        try:
            grey = to_grey(frame)
            if grey is None:
                return []
            seen: dict[Code, Read] = {}
            for read in self._reads(grey):
                seen.setdefault(read.code, read)
            return list(seen.values())
        except Exception as exc:  # one bad frame must not kill the scan loop
            # Type only: the message could quote payload bytes, which may be personal data.
            log.debug("%s frame decode failed: %s", self.name, type(exc).__name__)
            return []

    def __call__(self, frame) -> list[Code]:
        return _sort(read.code for read in self.reads(frame))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({sorted(self.symbologies)})"


# --- zxing-cpp --------------------------------------------------------------------------


def _formats_as_sequence() -> bool:
    """zxing-cpp 3 takes `formats` as a sequence (and deprecates `|`); 2.x wants BarcodeFormats flags."""
    try:
        zxingcpp.read_barcodes(np.full((8, 8), 255, np.uint8), formats=(zxingcpp.BarcodeFormat.QRCode,))
        return True
    except TypeError:
        return False


_FORMATS_AS_SEQUENCE = _formats_as_sequence()


def _zxing_formats(names: frozenset[str]):
    formats = [getattr(zxingcpp.BarcodeFormat, fmt) for name, fmt in _ZXING_FORMAT_NAMES.items() if name in names]
    if not formats:
        return None
    return tuple(formats) if _FORMATS_AS_SEQUENCE else functools.reduce(lambda a, b: a | b, formats)


def upce_from_upca(upca: str) -> str | None:
    """The 8-digit UPC-E (number system, six digits, check) that zero-suppresses `upca`, or None.

    The inverse of protocol.codes.expand_upce: each of the four suppression rules is tried and
    kept only if it expands back to the same UPC-A.
    """
    if len(upca) != 12 or not _DIGITS.fullmatch(upca) or upca[0] not in "01":
        return None
    body, check = upca[:11], upca[11]
    candidates = []
    if body[3] in "012" and body[4:8] == "0000":
        candidates.append(body[1:3] + body[8:11] + body[3])
    if body[4:9] == "00000":
        candidates.append(body[1:4] + body[9:11] + "3")
    if body[5:10] == "00000":
        candidates.append(body[1:5] + body[10] + "4")
    if body[6:10] == "0000" and body[10] in "56789":
        candidates.append(body[1:6] + body[10])
    for six in candidates:
        upce = body[0] + six + check
        try:
            if expand_upce(upce) == upca:
                return upce
        except ValueError:
            continue
    return None


def _zxing_code(result, names: frozenset[str]) -> Code | None:
    fmt = str(getattr(result.format, "name", result.format)).replace("-", "").replace(" ", "").upper()
    text = result.text
    if fmt == "QRCODE":
        return Code("qr", text)
    if fmt == "CODE128":
        return Code("code128", text)
    if fmt == "ITF":
        return Code("itf14", text) if _ITF14.fullmatch(text) else None
    if fmt == "EAN8":
        return Code("ean8", text)
    if fmt in ("EAN13", "UPCA"):
        # A UPC-A is an EAN-13 with a leading 0; zbar reports it as 12-digit UPC-A when that
        # symbology is enabled, and so do we.
        if len(text) == 13 and text[0] == "0" and "upca" in names:
            return Code("upca", text[1:])
        if len(text) == 12 and "upca" not in names:
            return Code("ean13", "0" + text)
        return Code("upca" if len(text) == 12 else "ean13", text)
    if fmt == "UPCE":
        extra = getattr(result, "extra", None) or {}
        printed = extra.get("UPCE") if isinstance(extra, dict) else None
        if isinstance(printed, str) and len(printed) == 8 and _DIGITS.fullmatch(printed):
            return Code("upce", printed)
        if len(text) in (6, 8):  # zxing-cpp 2.x reports the symbol's own digits
            return Code("upce", text)
        upca = text[1:] if len(text) == 13 and text[0] == "0" else text
        upce = upce_from_upca(upca)
        # Unreachable with valid symbols; a 12-digit UPC-A still gives the same GTIN-14.
        return Code("upce", upce) if upce else (Code("upca", upca) if len(upca) == 12 else None)
    return None


def _zxing_box(result) -> tuple[int, int, int, int]:
    p = result.position
    xs = [p.top_left.x, p.top_right.x, p.bottom_right.x, p.bottom_left.x]
    ys = [p.top_left.y, p.top_right.y, p.bottom_right.y, p.bottom_left.y]
    return min(xs), min(ys), max(xs), max(ys)


_POLARITIES = ("normal", "inverted", "both")


class ZxingDecoder(_Backend):
    """zxing-cpp.

    `polarity`: "normal" reads the frame as it is, "inverted" its negative, "both" the frame
    and then its negative for linear codes only. zxing-cpp's own inverted retry (`try_invert`,
    cheap: the binarised image is flipped, not re-binarised) covers 2D codes only (zxing-cpp
    issue #795); with `retry_inverted_2d` (the default) a light-on-dark QR is read whatever
    the polarity.
    `try_rotate` finds linear codes held upright, `try_downscale` codes close to the camera;
    `binarizer` "local" (adaptive, the default) or "global" (one histogram threshold).
    """

    name = "zxing"

    def __init__(self, symbologies: Iterable[str] = SYMBOLOGIES, *, polarity: str = "both",
                 retry_inverted_2d: bool = True, try_rotate: bool = True, try_downscale: bool = True,
                 binarizer: str = "local"):
        super().__init__(symbologies)
        if polarity not in _POLARITIES:
            raise ValueError(f"polarity must be one of {', '.join(_POLARITIES)}")
        self.polarity = polarity
        self._formats = _zxing_formats(self.symbologies)
        self._linear_formats = _zxing_formats(self.symbologies & _LINEAR) if polarity == "both" else None
        self._options = {"try_rotate": try_rotate, "try_downscale": try_downscale, "try_invert": retry_inverted_2d,
                         "text_mode": zxingcpp.TextMode.Plain,
                         "binarizer": {"local": zxingcpp.Binarizer.LocalAverage,
                                       "global": zxingcpp.Binarizer.GlobalHistogram}[binarizer]}

    def _reads(self, grey: np.ndarray) -> list[Read]:
        if self._formats is None:  # read_barcodes treats "no formats" as "every format"
            return []
        if self.polarity == "inverted":
            return self._pass(cv2.bitwise_not(grey), self._formats)
        reads = self._pass(grey, self._formats)
        if self._linear_formats is not None:
            reads += self._pass(cv2.bitwise_not(grey), self._linear_formats, try_invert=False)
        return reads

    def _pass(self, grey: np.ndarray, formats, **overrides) -> list[Read]:
        reads = []
        for result in zxingcpp.read_barcodes(grey, formats=formats, **{**self._options, **overrides}):
            code = _zxing_code(result, self.symbologies)
            if code is not None:
                reads.append(Read(code, _zxing_box(result)))
        return reads


# --- pyzbar -----------------------------------------------------------------------------


def _zbar_box(result) -> tuple[int, int, int, int]:
    rect = result.rect
    if rect is None:
        return 0, 0, 0, 0
    left, top, width, height = rect
    return left, top, left + width, top + height


class PyzbarDecoder(_Backend):
    """zbar through pyzbar. zbar has no inverted mode: `polarity` "both" decodes the frame and
    its negative (twice the cost), "normal" or "inverted" one of them."""

    name = "pyzbar"

    def __init__(self, symbologies: Iterable[str] = SYMBOLOGIES, *, polarity: str = "both"):
        super().__init__(symbologies)
        if polarity not in _POLARITIES:
            raise ValueError(f"polarity must be one of {', '.join(_POLARITIES)}")
        self.polarity = polarity
        # zbar reads UPC-A only with its EAN-13 decoder on: enable it, report only what was asked.
        self._symbols = zbar_symbols(self.symbologies | ({"ean13"} if "upca" in self.symbologies else set()))

    def _reads(self, grey: np.ndarray) -> list[Read]:
        # pyzbar treats an empty symbol list as "enable everything": never pass one.
        if not self._symbols:
            return []
        reads = []
        if self.polarity in ("normal", "both"):
            reads += self._pass(grey)
        if self.polarity in ("inverted", "both"):
            reads += self._pass(cv2.bitwise_not(grey))
        return reads

    def _pass(self, grey: np.ndarray) -> list[Read]:
        reads = []
        for result in pyzbar.decode(grey, symbols=self._symbols):
            code = _zbar_to_code(result)
            if code is not None and code.symbology in self.symbologies:
                reads.append(Read(code, _zbar_box(result)))
        return reads


# --- building decoders ------------------------------------------------------------------


def make_decoder(backend: str = DEFAULT_BACKEND, symbologies: Iterable[str] = SYMBOLOGIES, *,
                 try_inverted: bool = True) -> _Backend:
    """A pure per-frame decoder; with `try_inverted` every call also reads light-on-dark codes."""
    if backend == "zxing":
        if try_inverted:
            return ZxingDecoder(symbologies, polarity="both")
        return ZxingDecoder(symbologies, polarity="normal", retry_inverted_2d=False)
    if backend == "pyzbar":
        return PyzbarDecoder(symbologies, polarity="both" if try_inverted else "normal")
    raise ValueError(f"unknown decoder backend {backend!r}: choose from {', '.join(BACKENDS)}")


class AlternatingDecoder:
    """For the live loop with pyzbar: one zbar pass per frame, normal and inverted taking turns.

    With nothing in view the two passes alternate. A pass that read something is kept for
    the next frame, up to `max_run` frames in a row, then the other one gets a frame: a code
    in view is read on most frames (a barcode needs two reads within
    `scan.confirm_window_s`), and a code left in view (a poster, say) cannot starve the
    other polarity. Stateful: one instance per scan loop, called from its thread only.
    """

    def __init__(self, normal: Decoder, inverted: Decoder, *, max_run: int = 4):
        self.passes = (normal, inverted)
        self.max_run = max_run
        self.current = 0  # index into passes: 0 normal, 1 inverted
        self._run = 1  # frames in a row on the current pass, this one included

    def __call__(self, frame) -> list[Code]:
        codes = self.passes[self.current](frame)
        if codes and self._run < self.max_run:
            self._run += 1
        else:
            self.current ^= 1
            self._run = 1
        return codes

    def __repr__(self) -> str:
        return f"AlternatingDecoder({self.passes[0]!r}, {self.passes[1]!r})"


class SpreadDecoder:
    """For the live loop with zxing-cpp: `every` on each frame, `extra` on every `period`-th frame
    and on each frame after one where it read something.

    zxing-cpp's normal pass already reads light-on-dark QR codes (its inverted retry), so only
    inverted linear codes need a pass of their own, and they are rare (GS1 does not allow
    them; they come from phone screens in dark mode). Spreading that pass keeps the cost
    per frame near one pass while a normal code is never missed on any frame. Stateful: one
    instance per scan loop, called from its thread only.
    """

    def __init__(self, every: Decoder, extra: Decoder, *, period: int = 2):
        self.every, self.extra, self.period = every, extra, period
        self._frame = 0
        self._extra_read = False

    def __call__(self, frame) -> list[Code]:
        codes = self.every(frame)
        if self._extra_read or self._frame % self.period == 0:
            more = self.extra(frame)
            self._extra_read = bool(more)
            if more:
                codes = _sort([*codes, *more])
        self._frame += 1
        return codes

    def __repr__(self) -> str:
        return f"SpreadDecoder({self.every!r}, {self.extra!r}, period={self.period})"


def make_live_decoder(backend: str = DEFAULT_BACKEND, symbologies: Iterable[str] = SYMBOLOGIES, *,
                      try_inverted: bool = True) -> Decoder:
    """What the scan loop calls on every frame, with the inverted work spread over frames.

    zxing-cpp: a normal pass on every frame (it retries 2D codes inverted inside the call, so
    a dark-mode member QR is read on every frame) and an inverted pass for linear codes held
    roughly level on every other frame (SpreadDecoder). pyzbar: one pass per frame, normal
    and inverted alternating (AlternatingDecoder), since a second zbar pass doubles its cost.
    """
    names = _names(symbologies)
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if not try_inverted:
        return make_decoder(backend, names, try_inverted=False)
    if backend == "zxing":
        normal = ZxingDecoder(names, polarity="normal")
        if not names & _LINEAR:
            return normal
        # The inverted linear pass skips the 90-degree retry (0.6 instead of 1.6 ms at 640x480):
        # a barcode on a phone screen is held roughly level; still images get every retry.
        inverted = ZxingDecoder(names & _LINEAR, polarity="inverted", retry_inverted_2d=False, try_rotate=False)
        return SpreadDecoder(normal, inverted)
    return AlternatingDecoder(PyzbarDecoder(names, polarity="normal"), PyzbarDecoder(names, polarity="inverted"))


# --- still images: the union of both backends -------------------------------------------


def _same_place(a: Read, b: Read) -> bool:
    """Whether two reads come from the same symbol: overlapping boxes for linear codes (their
    boxes are scan-line extents, often thin); most of the area shared for 2D codes, so a QR
    nested inside another one stays a different code."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
    w, h = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    if w < 0 or h < 0:
        return False
    if a.code.symbology in _LINEAR:
        return True
    inter = w * h
    total = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return total > 0 and inter / total >= 0.5


def _product_key(code: Code) -> str:
    """The GTIN-14 a product code stands for (or its text), so UPC-A "0…" and EAN-13 compare equal."""
    result = classify(code.symbology, code.text)
    return result.gtin if isinstance(result, Product) else f"{code.symbology}:{code.text}"


@functools.lru_cache(maxsize=8)
def _still_decoders(symbologies: frozenset[str]) -> tuple[_Backend, _Backend, _Backend]:
    return (ZxingDecoder(symbologies, polarity="both"), PyzbarDecoder(symbologies, polarity="both"),
            ZxingDecoder(symbologies, polarity="both", binarizer="global"))


def _scaled_reads(decoder: _Backend, grey: np.ndarray, factor: float) -> list[Read]:
    """`decoder` on `grey` resized by `factor`, boxes mapped back to `grey`'s pixels."""
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(grey, None, fx=factor, fy=factor, interpolation=interpolation)
    return [Read(r.code, tuple(int(v / factor) for v in r.box)) for r in decoder.reads(resized)]


def still_reads(image, symbologies: Iterable[str] = SYMBOLOGIES, *, retry: bool = True) -> dict[str, list[Read]]:
    """Each backend's reads of one still image (both polarities): {"zxing": [...], "pyzbar": [...]}.

    With `retry`, a photo neither backend reads as it is gets a second chance (time does not
    matter here as it does in the live loop): zxing-cpp with a global-histogram binariser at
    full and half size, zbar at half and double size (double only up to 1600 px).
    """
    zx, zb, zx_global = _still_decoders(_names(symbologies))
    grey = to_grey(image)
    if grey is None:
        return {"zxing": [], "pyzbar": []}
    reads = {"zxing": zx.reads(grey), "pyzbar": zb.reads(grey)}
    if retry and not reads["zxing"] and not reads["pyzbar"]:
        height, width = grey.shape
        reads["zxing"] += zx_global.reads(grey)
        if min(height, width) >= 120:
            reads["zxing"] += _scaled_reads(zx_global, grey, 0.5)
            reads["pyzbar"] += _scaled_reads(zb, grey, 0.5)
        if max(height, width) <= 1600:
            reads["pyzbar"] += _scaled_reads(zb, grey, 2.0)
    return reads


def _family(code: Code) -> str:
    return "linear" if code.symbology in _LINEAR else code.symbology


def union(reads: dict[str, list[Read]]) -> list[Code]:
    """Merge per-backend reads of one still image: a code read by either backend counts.

    One exception keeps wrong reads down: a pyzbar read that contradicts a zxing-cpp read of
    the same kind at the same place (overlapping boxes, different value) is dropped. Measured
    on real photos, that is zbar guessing the wrong character set for Shift-JIS QR payloads,
    or one backend misreading a worn EAN as another valid one: zxing-cpp was right more often.
    Products compare by GTIN-14, so an EAN-13 "0…" and its UPC-A are one code.
    """
    zx, zb = reads.get("zxing", []), reads.get("pyzbar", [])
    kept = {r.code for r in zx}
    zx_keys = {(_family(r.code), _product_key(r.code)) for r in zx}
    for read in zb:
        family, key = _family(read.code), _product_key(read.code)
        if (family, key) in zx_keys:
            continue  # the same code; zxing-cpp's spelling is kept
        if any(_family(other.code) == family and _product_key(other.code) != key and _same_place(other, read)
               for other in zx):
            continue  # contradicted by zxing-cpp at the same place
        kept.add(read.code)
    return _sort(kept)


def decode_still(image, symbologies: Iterable[str] = SYMBOLOGIES) -> list[Code]:
    """All codes in a still image: the union of both backends and both polarities; never raises."""
    try:
        return union(still_reads(image, symbologies))
    except Exception as exc:  # e.g. cv2.resize on a degenerate image
        log.debug("still decode failed: %s", type(exc).__name__)
        return []
