"""Test helper: render QR, EAN-13/EAN-8/UPC-A/UPC-E and ITF barcodes as numpy images, and distort them.

Linear codes are drawn from the real GS1 encoding tables (L/G/R digit patterns, guard bars,
quiet zones), so a decoder that reads them reads real labels of the same geometry. Images
are greyscale uint8: white (255) background, black (0) bars.
"""

from __future__ import annotations

import cv2
import numpy as np
import segno

WHITE = 255
BLACK = 0

# EAN/UPC digit patterns, 7 modules each, "1" = bar. R is the complement of L; G is R reversed.
_L = ("0001101", "0011001", "0010011", "0111101", "0100011", "0110001", "0101111", "0111011", "0110111", "0001011")
_R = tuple("".join("1" if m == "0" else "0" for m in p) for p in _L)
_G = tuple(p[::-1] for p in _R)
# EAN-13: the first digit is not drawn; it selects the L/G parity of the left six digits.
_EAN13_PARITY = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG", "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL")
# UPC-E (number system 0): the check digit selects odd (L) / even (G) parity of the six digits;
# number system 1 uses the mirror image.
_UPCE_PARITY_NS0 = ("GGGLLL", "GGLGLL", "GGLLGL", "GGLLLG", "GLGGLL", "GLLGGL", "GLLLGG", "GLGLGL", "GLGLLG", "GLLGLG")
_START_END_GUARD = "101"
_CENTRE_GUARD = "01010"
_UPCE_END_GUARD = "010101"

# Interleaved 2 of 5: per digit, which of its 5 elements are wide.
_ITF = ("nnwwn", "wnnnw", "nwnnw", "wwnnn", "nnwnw", "wnwnn", "nwwnn", "nnnww", "wnnwn", "nwnwn")


def _digit_pattern(digit: str, table: str) -> str:
    return {"L": _L, "G": _G, "R": _R}[table][int(digit)]


def _modules_to_image(modules: str, module_px: int, height: int, quiet: int) -> np.ndarray:
    """A bar image from a module string ("1" bar, "0" space) with `quiet` modules each side."""
    row = np.array([BLACK if m == "1" else WHITE for m in "0" * quiet + modules + "0" * quiet], dtype=np.uint8)
    row = np.repeat(row, module_px)
    return np.tile(row, (height, 1))


def _require_digits(digits: str, length: int) -> None:
    if len(digits) != length or not digits.isdigit():
        raise ValueError(f"need {length} digits")


def ean13_modules(digits13: str) -> str:
    """The 95-module string of an EAN-13 (the check digit is drawn as given, valid or not)."""
    _require_digits(digits13, 13)
    parity = _EAN13_PARITY[int(digits13[0])]
    left = "".join(_digit_pattern(d, p) for d, p in zip(digits13[1:7], parity))
    right = "".join(_digit_pattern(d, "R") for d in digits13[7:])
    return _START_END_GUARD + left + _CENTRE_GUARD + right + _START_END_GUARD


def ean8_modules(digits8: str) -> str:
    """The 67-module string of an EAN-8."""
    _require_digits(digits8, 8)
    left = "".join(_digit_pattern(d, "L") for d in digits8[:4])
    right = "".join(_digit_pattern(d, "R") for d in digits8[4:])
    return _START_END_GUARD + left + _CENTRE_GUARD + right + _START_END_GUARD


def upce_modules(digits8: str) -> str:
    """The 51-module string of a UPC-E given as number system + six digits + check digit."""
    _require_digits(digits8, 8)
    if digits8[0] not in "01":
        raise ValueError("UPC-E number system must be 0 or 1")
    parity = _UPCE_PARITY_NS0[int(digits8[7])]
    if digits8[0] == "1":
        parity = parity.translate(str.maketrans("LG", "GL"))
    body = "".join(_digit_pattern(d, p) for d, p in zip(digits8[1:7], parity))
    return _START_END_GUARD + body + _UPCE_END_GUARD


def ean13_image(digits13: str, module_px: int = 3, height: int = 120, quiet: int = 11) -> np.ndarray:
    return _modules_to_image(ean13_modules(digits13), module_px, height, quiet)


def ean8_image(digits8: str, module_px: int = 3, height: int = 100, quiet: int = 7) -> np.ndarray:
    return _modules_to_image(ean8_modules(digits8), module_px, height, quiet)


def upca_image(digits12: str, module_px: int = 3, height: int = 120, quiet: int = 9) -> np.ndarray:
    """UPC-A is EAN-13 with an implicit leading 0 (all-L left half): same bars."""
    _require_digits(digits12, 12)
    return _modules_to_image(ean13_modules("0" + digits12), module_px, height, quiet)


def upce_image(digits8: str, module_px: int = 3, height: int = 100, quiet: int = 9) -> np.ndarray:
    return _modules_to_image(upce_modules(digits8), module_px, height, quiet)


def itf_image(digits: str, narrow_px: int = 3, wide_ratio: int = 3, height: int = 120, quiet: int = 10) -> np.ndarray:
    """Interleaved 2 of 5 (even digit count): pairs of digits, first in bars, second in spaces."""
    if len(digits) % 2 or not digits.isdigit():
        raise ValueError("ITF needs an even number of digits")
    widths = [1, 1, 1, 1]  # start: narrow bar, space, bar, space
    for first, second in zip(digits[::2], digits[1::2]):
        for bar, space in zip(_ITF[int(first)], _ITF[int(second)]):
            widths += [wide_ratio if bar == "w" else 1, wide_ratio if space == "w" else 1]
    widths += [wide_ratio, 1, 1]  # stop: wide bar, narrow space, narrow bar
    modules = "".join(("1" if i % 2 == 0 else "0") * w for i, w in enumerate(widths))
    return _modules_to_image(modules, narrow_px, height, quiet)


def qr_image(text: str, scale: int = 8, border: int = 4, eci: bool = False) -> np.ndarray:
    """A QR code (error correction M) with `border` quiet modules, `scale` px per module.

    eci=True declares UTF-8 in the symbol; without it zbar guesses the byte-mode encoding
    and reads mixed Latin/CJK UTF-8 text as Shift-JIS.
    """
    qr = segno.make_qr(text, error="m", eci=eci)
    dark = np.array([[bool(m) for m in row] for row in qr.matrix], dtype=bool)
    img = np.where(dark, BLACK, WHITE).astype(np.uint8)
    img = np.pad(img, border, constant_values=WHITE)
    return np.kron(img, np.ones((scale, scale), dtype=np.uint8))


# --- transforms -------------------------------------------------------------------------


def _white(img: np.ndarray):
    return (WHITE,) * img.shape[2] if img.ndim == 3 else WHITE


def rotate(img: np.ndarray, deg: float) -> np.ndarray:
    """Rotate counter-clockwise by `deg`, growing the canvas so nothing is cut; white fill."""
    h, w = img.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(round(h * sin + w * cos)), int(round(h * cos + w * sin))
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    return cv2.warpAffine(
        img, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=_white(img)
    )


def scale(img: np.ndarray, f: float) -> np.ndarray:
    """Resize by factor `f` (area averaging down, linear up, like a camera at another distance)."""
    interpolation = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, None, fx=f, fy=f, interpolation=interpolation)


def add_noise(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Add reproducible gaussian sensor noise of standard deviation `sigma` grey levels."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def place_on_canvas(
    img: np.ndarray, w: int = 640, h: int = 480, x: int | None = None, y: int | None = None, canvas=None
) -> np.ndarray:
    """Paste `img` on a white w x h canvas (or on a copy of `canvas`), centred unless x/y given."""
    out = np.full((h, w) + img.shape[2:], WHITE, dtype=np.uint8) if canvas is None else canvas.copy()
    ih, iw = img.shape[:2]
    x = (out.shape[1] - iw) // 2 if x is None else x
    y = (out.shape[0] - ih) // 2 if y is None else y
    if x < 0 or y < 0 or x + iw > out.shape[1] or y + ih > out.shape[0]:
        raise ValueError("image does not fit on the canvas at that position")
    out[y : y + ih, x : x + iw] = img
    return out


def invert(img: np.ndarray) -> np.ndarray:
    """Light code on a dark background (some printed cards and phone dark modes)."""
    return 255 - img


def to_bgr(img: np.ndarray) -> np.ndarray:
    """A 3-channel BGR frame, as the camera delivers, from a grey image."""
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation `sigma` pixels (focus, motion of a hand)."""
    return cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0 else img.copy()


def perspective(img: np.ndarray, tilt: float = 0.15, seed: int = 0) -> np.ndarray:
    """Warp as if seen at an angle: each corner moves inwards by up to `tilt` of the size; white fill."""
    h, w = img.shape[:2]
    rng = np.random.default_rng(seed)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(0, tilt, (4, 2)) * np.float32([w, h])
    dst = np.float32([[jitter[0, 0], jitter[0, 1]], [w - jitter[1, 0], jitter[1, 1]],
                      [w - jitter[2, 0], h - jitter[2, 1]], [jitter[3, 0], h - jitter[3, 1]]])
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=_white(img))


def phone_dark_mode(img: np.ndarray, w: int = 640, h: int = 480, screen: int = 30, seed: int = 0) -> np.ndarray:
    """A code shown light-on-dark on a phone screen held in front of the camera: the inverted
    code on a dark screen, the screen on a mid-grey scene, a little sensor noise."""
    code = invert(img)
    code = np.where(code == BLACK, screen, code).astype(np.uint8)  # a screen's black is not 0
    ih, iw = code.shape[:2]
    pad = 24
    phone = np.full((ih + 2 * pad, iw + 2 * pad), screen, np.uint8)
    phone[pad:pad + ih, pad:pad + iw] = code
    scene = np.full((h, w), 120, np.uint8)
    return add_noise(place_on_canvas(phone, w, h, canvas=scene), 6, seed=seed)


def code128_image(text: str, module_px: int = 3, gs1: bool = False) -> np.ndarray:
    """A Code 128 (GS1-128 with `gs1`, text like "(01)09506000134352") drawn by zxing-cpp's writer.

    tests/barcodes.py has no Code 128 tables of its own; the result is checked against zbar,
    an independent reader, in the tests that use it.
    """
    import zxingcpp

    options = {"gs1": True} if gs1 else {}
    barcode = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.Code128, **options)
    img = np.ascontiguousarray(np.array(barcode.to_image(scale=module_px, add_quiet_zones=True)))
    return np.repeat(img[:1], 120, axis=0) if img.shape[0] < 120 else img
