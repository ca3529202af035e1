"""Tests for kiosk.decoders: both backends (zxing-cpp, pyzbar) on rendered codes, dark mode, the live
loop's decoders, the still-image union, symbology names, and the backend chosen by config.

Generated images only (tests/barcodes.py); the real photos are for bench/readrate.py.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import zxingcpp

from barcodes import (
    add_noise,
    blur,
    code128_image,
    ean8_image,
    ean13_image,
    invert,
    itf_image,
    perspective,
    phone_dark_mode,
    place_on_canvas,
    qr_image,
    rotate,
    scale,
    to_bgr,
    upca_image,
    upce_image,
)
from kiosk import decoders as decoders_module
from kiosk.decode import SUPPORTED_SYMBOLOGIES, SYMBOLOGIES, Code
from kiosk.decoders import (
    BACKENDS,
    DEFAULT_BACKEND,
    AlternatingDecoder,
    PyzbarDecoder,
    Read,
    SpreadDecoder,
    ZxingDecoder,
    decode_still,
    make_decoder,
    make_live_decoder,
    union,
    upce_from_upca,
)
from protocol.codes import MemberCandidate, Product, classify, expand_upce, gtin_check_digit
from protocol.settings import ConfigError

GTIN14 = "09506000134352"
DIGITAL_LINK = f"https://id.gs1.org/01/{GTIN14}/10/ABC123/21/456"
JWS = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJtMSIsInR5cCI6ImFwcCJ9.c2lnbmF0dXJlLWJ5dGVz"

# name -> (image factory, expected Code, expected GTIN-14 or None for a member token)
CASES = {
    "qr-digital-link": (lambda: qr_image(DIGITAL_LINK, scale=4), Code("qr", DIGITAL_LINK), GTIN14),
    "qr-member-token": (lambda: qr_image(JWS, scale=4), Code("qr", JWS), None),
    "ean13": (lambda: ean13_image("4006381333931"), Code("ean13", "4006381333931"), "04006381333931"),
    "ean8": (lambda: ean8_image("96385074"), Code("ean8", "96385074"), "00000096385074"),
    "upca": (lambda: upca_image("036000291452"), Code("upca", "036000291452"), "00036000291452"),
    "upce": (lambda: upce_image("04252614"), Code("upce", "04252614"), "00042100005264"),
    "itf14": (lambda: itf_image("15400141288763"), Code("itf14", "15400141288763"), "15400141288763"),
}

# Sizes, angles, blur, noise, perspective: what a camera at a kiosk does to a code.
TRANSFORMS = {
    "plain": lambda img: img,
    "bgr": to_bgr,
    "small": lambda img: scale(img, 0.6),
    "large": lambda img: scale(img, 2.5),
    "skew-8": lambda img: rotate(img, 8),
    "skew-minus-15": lambda img: rotate(img, -15),
    "rotate-90": lambda img: rotate(img, 90),
    "rotate-180": lambda img: rotate(img, 180),
    "rotate-270": lambda img: rotate(img, 270),
    "blur-1": lambda img: blur(img, 1.0),
    "blur-1.5-large": lambda img: blur(scale(img, 1.5), 1.5),
    "noise": lambda img: add_noise(img, 6, seed=1),
    "perspective": lambda img: perspective(img, 0.1, seed=4),
    "canvas-small": lambda img: place_on_canvas(scale(img, 0.7), 640, 480, x=30, y=40),
    "canvas-720p": lambda img: place_on_canvas(img, 1280, 720, x=700, y=300),
    "camera": lambda img: to_bgr(add_noise(blur(place_on_canvas(perspective(rotate(scale(img, 0.9), 6), 0.06, seed=2)),
                                                0.7), 6, seed=3)),
}


def gtin_of(code: Code) -> str | None:
    result = classify(code.symbology, code.text)
    if isinstance(result, MemberCandidate):
        return None
    assert isinstance(result, Product), result
    return result.gtin


@pytest.fixture(scope="module")
def backends():
    return {name: make_decoder(name, SUPPORTED_SYMBOLOGIES) for name in BACKENDS}


# --- both backends read the same codes, with the same names ------------------------------


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_rendered_codes(backends, backend, case, transform):
    make, expected, gtin = CASES[case]
    codes = backends[backend](TRANSFORMS[transform](make()))
    assert codes == [expected]
    assert gtin_of(codes[0]) == gtin


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_dark_mode_phone_screen(backends, backend, case):
    make, expected, gtin = CASES[case]
    frame = phone_dark_mode(scale(make(), 0.8), seed=5)
    assert frame.mean() < 128  # light code on a dark screen
    assert backends[backend](frame) == [expected]
    assert backends[backend](to_bgr(invert(make()))) == [expected]


@pytest.mark.parametrize("case", ["qr-digital-link", "ean13", "upca"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_dark_mode_needs_try_inverted(backend, case):
    make, expected, _ = CASES[case]
    frame = phone_dark_mode(make(), seed=6)
    assert make_decoder(backend, SYMBOLOGIES, try_inverted=False)(frame) == []
    assert make_decoder(backend, SYMBOLOGIES, try_inverted=True)(frame) == [expected]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gs1_128_when_configured(backend):
    img = code128_image("(01)09506000134352(10)LOT7", gs1=True)
    assert make_decoder(backend, SYMBOLOGIES)(img) == []  # not in the default set
    (code,) = make_decoder(backend, SYMBOLOGIES + ("code128",))(img)
    assert code == Code("code128", "0109506000134352" + "10LOT7")
    assert classify(code.symbology, code.text) == Product(GTIN14, "code128")


@pytest.mark.parametrize("backend", BACKENDS)
def test_upc_a_is_ean13_when_only_ean13_is_enabled(backend):
    assert make_decoder(backend, ("ean13",))(upca_image("036000291452")) == [Code("ean13", "0036000291452")]
    assert make_decoder(backend, ("upca",))(upca_image("036000291452")) == [Code("upca", "036000291452")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_interleaved_2_of_5_is_dropped(backend):
    assert make_decoder(backend, SYMBOLOGIES)(itf_image("123457")) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_disabled_symbologies_are_not_read(backend):
    assert make_decoder(backend, ("qr",))(ean13_image("4006381333931")) == []
    assert make_decoder(backend, ("ean13",))(qr_image("hello")) == []
    assert make_decoder(backend, ())(qr_image("hello")) == []  # nothing enabled reads nothing, not everything
    assert make_decoder(backend, "qr")(qr_image("hello")) == [Code("qr", "hello")]  # a lone name


@pytest.mark.parametrize("backend", BACKENDS)
def test_utf8_and_crlf_payloads(backend):
    text = "Grüße 東京\r\nline two"
    assert make_decoder(backend)(qr_image(text, eci=True)) == [Code("qr", text)]


def test_zxing_names_give_the_same_gtin_as_pyzbar(backends):
    for case, (make, _, gtin) in CASES.items():
        img = make()
        zx, zb = backends["zxing"](img), backends["pyzbar"](img)
        assert zx == zb, case
        assert gtin_of(zx[0]) == gtin


def _zxing_result(fmt: str, text: str, extra=None):
    return SimpleNamespace(format=getattr(zxingcpp.BarcodeFormat, fmt), text=text, extra=extra)


@pytest.mark.parametrize("fmt, text, extra, names, expected", [
    ("EAN13", "0036000291452", None, SYMBOLOGIES, Code("upca", "036000291452")),
    ("EAN13", "0036000291452", None, ("ean13",), Code("ean13", "0036000291452")),
    ("UPCA", "036000291452", None, ("upca",), Code("upca", "036000291452")),
    ("UPCA", "036000291452", None, ("ean13",), Code("ean13", "0036000291452")),
    ("UPCE", "0042100005264", {"UPCE": "04252614"}, SYMBOLOGIES, Code("upce", "04252614")),  # zxing-cpp 3
    ("UPCE", "0042100005264", None, SYMBOLOGIES, Code("upce", "04252614")),  # no extra: compressed back
    ("UPCE", "04252614", None, SYMBOLOGIES, Code("upce", "04252614")),  # zxing-cpp 2.x
    ("ITF", "15400141288763", None, SYMBOLOGIES, Code("itf14", "15400141288763")),
    ("ITF", "1540014128876", None, SYMBOLOGIES, None),
    ("EAN8", "96385074", None, SYMBOLOGIES, Code("ean8", "96385074")),
    ("QRCode", "hello", None, SYMBOLOGIES, Code("qr", "hello")),
    ("Code128", "0109506000134352", None, SUPPORTED_SYMBOLOGIES, Code("code128", "0109506000134352")),
    ("DataMatrix", "x", None, SYMBOLOGIES, None),
])
def test_zxing_result_mapping(fmt, text, extra, names, expected):
    code = decoders_module._zxing_code(_zxing_result(fmt, text, extra), frozenset(names))
    assert code == expected
    if expected is not None and expected.symbology != "qr":
        assert isinstance(classify(code.symbology, code.text), Product)


def test_upce_compression_round_trips():
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(3000):
        system = str(rng.integers(0, 2))
        six = "".join(str(d) for d in rng.integers(0, 10, 6))
        from protocol.codes import _upce_to_upca_body
        body = _upce_to_upca_body(system, six)
        upce = system + six + str(gtin_check_digit(body))
        upca = expand_upce(upce)
        compressed = upce_from_upca(upca)
        assert compressed is not None and expand_upce(compressed) == upca
        checked += 1
    assert checked == 3000
    assert upce_from_upca("036000291452") is None  # not zero-suppressible
    assert upce_from_upca("abc") is None and upce_from_upca("236000291452") is None


# --- several codes, garbage, frames without a code ------------------------------------


def _busy_frame() -> np.ndarray:
    qr = qr_image(DIGITAL_LINK, scale=3)
    frame = place_on_canvas(qr, 1280, 720, x=20, y=20)
    frame = place_on_canvas(qr, x=20, y=400, canvas=frame)  # the same QR twice
    frame = place_on_canvas(ean13_image("4006381333931", module_px=2, height=80), x=450, y=40, canvas=frame)
    frame = place_on_canvas(ean8_image("96385074", module_px=2, height=70), x=450, y=300, canvas=frame)
    frame = place_on_canvas(invert(qr_image(JWS, scale=3)), x=850, y=300, canvas=frame)  # a dark-mode phone
    return to_bgr(add_noise(frame, 5, seed=9))


BUSY = sorted([Code("ean13", "4006381333931"), Code("ean8", "96385074"), Code("qr", DIGITAL_LINK), Code("qr", JWS)],
              key=lambda code: (code.symbology, code.text))


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_codes_in_one_frame_each_once(backends, backend):
    assert backends[backend](_busy_frame()) == BUSY


def test_several_codes_in_one_still_each_once():
    assert decode_still(_busy_frame()) == BUSY


def test_several_codes_through_the_live_decoders():
    # pyzbar's live decoder keeps the normal polarity while it reads, for at most 4 frames:
    # the dark-mode QR is read on the fifth.
    for backend in BACKENDS:
        live = make_live_decoder(backend)
        seen = [live(_busy_frame()) for _ in range(5)]
        assert set().union(*map(set, seen)) == set(BUSY)
        assert all(len(codes) == len(set(codes)) for codes in seen)


GARBAGE = [
    None,
    np.zeros((0, 0), np.uint8),
    np.zeros((480, 0, 3), np.uint8),
    np.zeros((1, 1), np.uint8),
    qr_image("4006381333931").astype(np.float32),
    qr_image("4006381333931").astype(np.int16),
    np.dstack([qr_image("4006381333931")] * 4),
    np.dstack([qr_image("4006381333931")] * 2),
    np.zeros((4, 4, 3, 2), np.uint8),
    np.zeros(640, np.uint8),
    np.uint8(0),
    qr_image("4006381333931").tolist(),
    "frame.png",
    b"\x89PNG",
]


@pytest.mark.parametrize("frame", GARBAGE, ids=lambda f: type(f).__name__ + str(getattr(f, "shape", "")))
def test_garbage_frames_never_raise(frame):
    for backend in BACKENDS:
        assert make_decoder(backend, SUPPORTED_SYMBOLOGIES)(frame) == []
        assert make_live_decoder(backend)(frame) == []
    assert decode_still(frame) == []


@pytest.mark.parametrize("frame", [
    np.full((480, 640), 255, np.uint8),
    np.zeros((480, 640, 3), np.uint8),
    add_noise(np.full((480, 640), 128, np.uint8), 60, seed=0),
    np.random.default_rng(7).integers(0, 256, (720, 1280), dtype=np.uint8),
    blur(np.random.default_rng(8).integers(0, 256, (480, 640), dtype=np.uint8), 2),
], ids=["white", "black-bgr", "grey-noise", "uniform-noise-720p", "blurred-noise"])
def test_frames_without_codes(frame):
    for backend in BACKENDS:
        assert make_decoder(backend, SUPPORTED_SYMBOLOGIES)(frame) == []
    assert decode_still(frame, SUPPORTED_SYMBOLOGIES) == []


@pytest.mark.parametrize("error", [RuntimeError("boom SECRET"), MemoryError(), ValueError("x"),
                                   UnicodeDecodeError("utf-8", b"\xff", 0, 1, "SECRET")])
def test_zxing_errors_never_escape(monkeypatch, caplog, error):
    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr(decoders_module.zxingcpp, "read_barcodes", explode)
    with caplog.at_level(logging.DEBUG, logger="kiosk.decode"):
        assert make_decoder("zxing")(qr_image("SECRET-PAYLOAD")) == []
        assert make_live_decoder("zxing")(qr_image("SECRET-PAYLOAD")) == []
    assert type(error).__name__ in caplog.text and "SECRET" not in caplog.text


def test_pyzbar_errors_never_escape(monkeypatch):
    def explode(*args, **kwargs):
        raise cv2.error("bad")

    monkeypatch.setattr(decoders_module.pyzbar, "decode", explode)
    assert make_decoder("pyzbar")(qr_image("x")) == []
    # The still path keeps what the other backend read.
    assert decode_still(qr_image("x")) == [Code("qr", "x")]


def test_unknown_backend_and_polarity():
    with pytest.raises(ValueError):
        make_decoder("wechat")
    with pytest.raises(ValueError):
        make_live_decoder("zbar")
    with pytest.raises(ValueError):
        ZxingDecoder(polarity="sideways")
    with pytest.raises(ValueError):
        PyzbarDecoder(polarity="sideways")


# --- the live loop's decoders ----------------------------------------------------------


def _reads(decoder, frame, n):
    return [bool(decoder(frame)) for _ in range(n)]


def test_zxing_live_reads_normal_codes_and_dark_mode_qr_on_every_frame():
    live = make_live_decoder("zxing")
    assert isinstance(live, SpreadDecoder)
    assert _reads(live, place_on_canvas(ean13_image("4006381333931")), 6) == [True] * 6
    assert _reads(live, phone_dark_mode(qr_image(JWS, scale=3)), 6) == [True] * 6


def test_zxing_live_reads_inverted_barcodes_within_two_frames_then_every_frame():
    live = make_live_decoder("zxing")
    frame = phone_dark_mode(rotate(ean13_image("4006381333931"), 10), seed=1)
    for _ in range(3):  # whatever the phase after frames without a code
        live(np.full((480, 640), 200, np.uint8))
        seen = _reads(live, frame, 6)
        assert seen[0] or seen[1]
        assert all(seen[seen.index(True):])


def test_zxing_live_costs_one_pass_a_frame_plus_an_inverted_linear_pass_every_other_frame(monkeypatch):
    calls = []
    real = zxingcpp.read_barcodes

    def counting(image, **kwargs):
        calls.append(kwargs["formats"])
        return real(image, **kwargs)

    monkeypatch.setattr(decoders_module.zxingcpp, "read_barcodes", counting)
    live = make_live_decoder("zxing")
    empty = np.full((480, 640), 180, np.uint8)
    for _ in range(10):
        live(empty)
    assert len(calls) == 15
    assert make_live_decoder("zxing", ("qr",)).__class__ is ZxingDecoder  # no linear codes: one pass


@pytest.mark.parametrize("dark", [False, True])
def test_pyzbar_live_alternates_and_sticks_to_what_reads(dark):
    live = make_live_decoder("pyzbar")
    assert isinstance(live, AlternatingDecoder)
    img = place_on_canvas(ean13_image("4006381333931"))
    frame = phone_dark_mode(ean13_image("4006381333931")) if dark else img
    seen = _reads(live, frame, 12)
    assert seen[0] or seen[1]
    assert sum(seen) >= 9  # at most one frame in five goes to the other polarity


def test_alternating_decoder_bounds_the_run_so_the_other_polarity_is_tried():
    normal_calls, inverted_calls = [], []

    def normal(frame):
        normal_calls.append(frame)
        return [Code("qr", "poster")]  # a code that never leaves the view

    def inverted(frame):
        inverted_calls.append(frame)
        return []

    live = AlternatingDecoder(normal, inverted, max_run=4)
    for i in range(20):
        live(i)
    assert len(inverted_calls) == 4 and len(normal_calls) == 16
    assert all(b - a <= 5 for a, b in zip(inverted_calls, inverted_calls[1:]))


def test_spread_decoder_runs_the_extra_pass_every_period_and_while_it_reads():
    extra_frames = []

    def extra(frame):
        extra_frames.append(frame)
        return [Code("ean13", "4006381333931")] if 10 <= frame < 14 else []

    spread = SpreadDecoder(lambda frame: [], extra, period=3)
    results = [spread(i) for i in range(20)]
    assert extra_frames == [0, 3, 6, 9, 12, 13, 14, 15, 18]
    assert [i for i, codes in enumerate(results) if codes] == [12, 13]


def test_live_decoder_without_try_inverted_is_one_plain_pass():
    for backend in BACKENDS:
        live = make_live_decoder(backend, try_inverted=False)
        assert live(phone_dark_mode(qr_image("hello", scale=4))) == []
        assert live(place_on_canvas(qr_image("hello", scale=4))) == [Code("qr", "hello")]


# --- still images: the union of both backends ------------------------------------------


def _read(symbology, text, box):
    return Read(Code(symbology, text), box)


def test_union_keeps_what_either_backend_read():
    merged = union({
        "zxing": [_read("qr", "a", (0, 0, 100, 100))],
        "pyzbar": [_read("ean13", "4006381333931", (200, 200, 400, 260))],
    })
    assert merged == [Code("ean13", "4006381333931"), Code("qr", "a")]
    assert union({"zxing": [], "pyzbar": [_read("qr", "b", (0, 0, 1, 1))]}) == [Code("qr", "b")]
    assert union({"zxing": [_read("qr", "b", (0, 0, 1, 1))], "pyzbar": []}) == [Code("qr", "b")]


def test_union_drops_a_pyzbar_product_contradicted_at_the_same_place():
    zx = [_read("ean13", "4006381333931", (100, 120, 400, 140))]
    misread = _read("ean13", "4006381333948", (95, 100, 405, 260))  # another valid EAN-13, same label
    assert union({"zxing": zx, "pyzbar": [misread]}) == [Code("ean13", "4006381333931")]
    elsewhere = _read("ean13", "4006381333948", (95, 300, 405, 400))  # a second label in the photo
    assert union({"zxing": zx, "pyzbar": [elsewhere]}) == [Code("ean13", "4006381333931"),
                                                             Code("ean13", "4006381333948")]


def test_union_prefers_zxing_text_for_the_same_qr_and_keeps_a_nested_one():
    zx = [_read("qr", "ﾃﾞｻﾞｲﾝQR", (18, 18, 200, 200))]
    charset_guess = _read("qr", "蹬靼翌QR", (18, 18, 199, 199))
    assert union({"zxing": zx, "pyzbar": [charset_guess]}) == [Code("qr", "ﾃﾞｻﾞｲﾝQR")]
    inner = _read("qr", "inner", (90, 90, 130, 130))
    assert union({"zxing": zx, "pyzbar": [inner]}) == [Code("qr", "inner"), Code("qr", "ﾃﾞｻﾞｲﾝQR")]


def test_union_treats_upc_a_and_its_ean13_as_one_product():
    merged = union({"zxing": [_read("upca", "036000291452", (0, 0, 300, 20))],
                    "pyzbar": [_read("ean13", "0036000291452", (0, 0, 300, 90))]})
    assert merged == [Code("upca", "036000291452")]


@pytest.mark.parametrize("blind", BACKENDS)
def test_still_reads_what_either_backend_alone_reads(monkeypatch, blind):
    frame = place_on_canvas(ean13_image("4006381333931"))
    cls = ZxingDecoder if blind == "zxing" else PyzbarDecoder
    monkeypatch.setattr(cls, "_reads", lambda self, grey: [])
    decoders_module._still_decoders.cache_clear()
    try:
        assert decode_still(frame) == [Code("ean13", "4006381333931")]
    finally:
        decoders_module._still_decoders.cache_clear()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("transform", ["camera", "rotate-90", "perspective", "canvas-720p"])
def test_still_is_a_superset_of_each_backend(backends, case, transform):
    frame = TRANSFORMS[transform](CASES[case][0]())
    still = set(decode_still(frame, SUPPORTED_SYMBOLOGIES))
    assert set(backends["zxing"](frame)) <= still and set(backends["pyzbar"](frame)) <= still
    assert still == {CASES[case][1]}


def test_still_reads_inverted_barcodes_at_any_angle():
    frame = phone_dark_mode(rotate(ean13_image("4006381333931"), 90))
    assert decode_still(frame) == [Code("ean13", "4006381333931")]


# Where one backend is measurably stronger than the other (see docs/decoders.md): zbar reads
# EAN/UPC down to 1.5 px a module, zxing-cpp needs about 2; zxing-cpp reads ITF under heavier
# noise and QR codes under perspective plus blur. The still union reads all of them.
HARD = {
    "ean13-1.5px-module": (lambda: place_on_canvas(scale(ean13_image("4006381333931"), 0.5), x=30, y=40),
                           Code("ean13", "4006381333931")),
    "upce-1.5px-module": (lambda: place_on_canvas(scale(upce_image("04252614"), 0.5), x=30, y=40),
                          Code("upce", "04252614")),
    "itf14-noise-20": (lambda: add_noise(itf_image("15400141288763"), 20, seed=1), Code("itf14", "15400141288763")),
    "qr-perspective-blur": (lambda: to_bgr(add_noise(blur(place_on_canvas(perspective(rotate(
        scale(qr_image(DIGITAL_LINK, scale=4), 0.7), 6), 0.06, seed=2)), 0.8), 8, seed=3)), Code("qr", DIGITAL_LINK)),
}


@pytest.mark.parametrize("case", HARD)
def test_still_reads_what_only_one_backend_reads(backends, case):
    make, expected = HARD[case]
    frame = make()
    zx, zb = backends["zxing"](frame), backends["pyzbar"](frame)
    assert expected in zx or expected in zb
    assert decode_still(frame) == [expected]


def test_still_retries_a_photo_nothing_read(monkeypatch):
    # A QR far too large for one pass is read at half size by the retry.
    calls = []
    real = PyzbarDecoder._reads

    def spy(self, grey):
        calls.append(grey.shape)
        return real(self, grey)

    monkeypatch.setattr(PyzbarDecoder, "_reads", spy)
    decoders_module._still_decoders.cache_clear()
    try:
        assert decode_still(np.full((400, 600), 255, np.uint8)) == []
        assert sorted(calls) == [(200, 300), (400, 600), (800, 1200)]
        calls.clear()
        assert decode_still(place_on_canvas(qr_image("x", scale=4))) == [Code("qr", "x")]
        assert calls == [(480, 640)]  # read at once: no retry
    finally:
        decoders_module._still_decoders.cache_clear()


# --- backend choice by config, and the CLI ---------------------------------------------


def _config(tmp_path, extra: str = "", environ=None):
    from kiosk.config import load_config

    path = tmp_path / "kiosk.toml"
    path.write_text(f'store = "s001"\ndevice = "s001-k01"\n[tokens]\njwks_file = "{tmp_path / "jwks.json"}"\n{extra}')
    return load_config(path, environ or {})


def test_default_backend_is_zxing_with_inverted_codes(tmp_path):
    config = _config(tmp_path)
    assert config["scan.decoder"] == DEFAULT_BACKEND == "zxing" and config["scan.try_inverted"] is True


@pytest.mark.parametrize("toml, environ, expected", [
    ('[scan]\ndecoder = "pyzbar"\n', {}, AlternatingDecoder),
    ("", {"OMNIKIOSK_SCAN_DECODER": "pyzbar"}, AlternatingDecoder),
    ('[scan]\ndecoder = "zxing"\n', {}, SpreadDecoder),
    ('[scan]\ndecoder = "pyzbar"\ntry_inverted = false\n', {}, PyzbarDecoder),
    ("", {"OMNIKIOSK_SCAN_TRY_INVERTED": "false"}, ZxingDecoder),
])
def test_backend_choice_via_config(tmp_path, toml, environ, expected):
    config = _config(tmp_path, toml, environ)
    live = make_live_decoder(config["scan.decoder"], config["scan.symbologies"],
                             try_inverted=config["scan.try_inverted"])
    assert type(live) is expected
    assert live(place_on_canvas(qr_image("hello", scale=4))) == [Code("qr", "hello")]


def test_unknown_backend_in_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="scan.decoder"):
        _config(tmp_path, '[scan]\ndecoder = "zbar"\n')


@pytest.mark.parametrize("backend, expected", [("pyzbar", AlternatingDecoder), ("zxing", SpreadDecoder)])
def test_run_kiosk_builds_the_configured_decoder(tmp_path, monkeypatch, backend, expected):
    """run_kiosk wires scan.decoder into the ScanLoop (the loop and the web server are stubbed)."""
    import kiosk.__main__ as cli
    import kiosk.loop
    import kiosk.web

    built = {}

    class FakeLoop:
        def __init__(self, source, shopper, *, decoder, **kwargs):
            built["decoder"] = decoder
            self.stats = {"camera": "ok", "frames": 0, "decode_ms": 0}

        def start(self):
            return self

        def stop(self):
            """Nothing was started."""

    class FakeSocketIO:
        def run(self, *args, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(kiosk.loop, "ScanLoop", FakeLoop)
    monkeypatch.setattr(kiosk.web, "create_app", lambda config, **kwargs: (None, FakeSocketIO()))
    monkeypatch.setattr(cli, "interrupt_on_sigterm", lambda: None)
    config = _config(tmp_path, f'[scan]\ndecoder = "{backend}"\n[camera]\nsource = "folder:{tmp_path / "cam"}"\n'
                               f'[outbox]\npath = "{tmp_path / "o.db"}"\n[catalog]\npath = "{tmp_path / "c.db"}"\n')
    cli.run_kiosk(config, keys=None)
    assert type(built["decoder"]) is expected


def test_decode_command_prints_one_json_line_per_file(tmp_path, capsys):
    from kiosk.__main__ import decode_command

    dark = tmp_path / "dark.png"
    cv2.imwrite(str(dark), phone_dark_mode(qr_image("line one\r\nline two", scale=4)))
    busy = tmp_path / "busy.jpg"
    cv2.imwrite(str(busy), _busy_frame(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((480, 640), 255, np.uint8))
    status = decode_command([str(dark), str(busy), str(blank), str(tmp_path / "missing.png")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert lines[0] == {"file": str(dark), "codes": [{"symbology": "qr", "text": "line one\r\nline two"}]}
    assert lines[1]["codes"] == [{"symbology": c.symbology, "text": c.text} for c in BUSY]
    assert lines[2] == {"file": str(blank), "codes": []}
    assert lines[3] == {"file": str(tmp_path / "missing.png"), "error": "not found"}
