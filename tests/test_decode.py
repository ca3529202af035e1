"""Tests for kiosk.decode: rendered barcodes (tests/barcodes.py) read back through pyzbar, and bad frames."""

import logging

import cv2
import numpy as np
import pytest
from pyzbar import pyzbar

from barcodes import (
    add_noise,
    ean8_image,
    ean13_image,
    itf_image,
    place_on_canvas,
    qr_image,
    rotate,
    scale,
    to_bgr,
    upca_image,
    upce_image,
)
from kiosk import decode as decode_module
from kiosk.decode import SUPPORTED_SYMBOLOGIES, SYMBOLOGIES, Code, decode, decode_file
from protocol.codes import MemberCandidate, Product, classify

GTIN14 = "09506000134352"
DIGITAL_LINK = f"https://id.gs1.org/01/{GTIN14}/10/ABC123/21/456"
JWS = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJtMSIsInR5cCI6ImFwcCJ9.c2lnbmF0dXJlLWJ5dGVz"

# name -> (image factory, expected Code, expected GTIN-14)
CASES = {
    "qr-digital-link": (lambda: qr_image(DIGITAL_LINK), Code("qr", DIGITAL_LINK), GTIN14),
    "qr-numeric": (lambda: qr_image("4006381333931"), Code("qr", "4006381333931"), "04006381333931"),
    "ean13": (lambda: ean13_image("4006381333931"), Code("ean13", "4006381333931"), "04006381333931"),
    "ean8": (lambda: ean8_image("96385074"), Code("ean8", "96385074"), "00000096385074"),
    "upca": (lambda: upca_image("036000291452"), Code("upca", "036000291452"), "00036000291452"),
    "upce": (lambda: upce_image("04252614"), Code("upce", "04252614"), "00042100005264"),
}

TRANSFORMS = {
    "plain": lambda img: img,
    "bgr": to_bgr,
    "rotate-90": lambda img: rotate(img, 90),
    "rotate-180": lambda img: rotate(img, 180),
    "skew-7": lambda img: rotate(img, 7),
    "skew-minus-7": lambda img: rotate(img, -7),
    "scale-down": lambda img: scale(img, 0.6),
    "scale-up": lambda img: scale(img, 2),
    "noise": lambda img: add_noise(img, 20, seed=1),
    "small-on-canvas": lambda img: place_on_canvas(scale(img, 0.5)),
    "canvas-skew-noise": lambda img: add_noise(place_on_canvas(rotate(scale(img, 0.6), 7)), 15, seed=3),
}


def assert_product(code: Code, gtin: str) -> None:
    product = classify(code.symbology, code.text)
    assert isinstance(product, Product), product
    assert product.gtin == gtin


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("case", CASES)
def test_rendered_codes_decode_and_classify(case, transform):
    make, expected, gtin = CASES[case]
    codes = decode(TRANSFORMS[transform](make()))
    assert codes == [expected]
    assert_product(codes[0], gtin)


def test_digital_link_qualifiers_survive_decoding():
    (code,) = decode(place_on_canvas(qr_image(DIGITAL_LINK, scale=4)))
    assert classify(code.symbology, code.text) == Product(GTIN14, "digital-link", (("10", "ABC123"), ("21", "456")))


def test_member_token_qr():
    (code,) = decode(add_noise(place_on_canvas(qr_image(JWS, scale=4)), 10, seed=2))
    assert classify(code.symbology, code.text) == MemberCandidate(JWS)


def test_utf8_qr_with_eci():
    text = "Grüße 東京"
    assert decode(qr_image(text, eci=True)) == [Code("qr", text)]


@pytest.mark.parametrize("transform", ["plain", "rotate-90", "rotate-180", "scale-down", "scale-up", "bgr"])
def test_itf14(transform):
    codes = decode(TRANSFORMS[transform](itf_image("15400141288763")))
    assert codes == [Code("itf14", "15400141288763")]
    assert_product(codes[0], "15400141288763")


def test_short_interleaved_2_of_5_is_dropped():
    img = itf_image("123457")
    assert [d.type for d in pyzbar.decode(img)] == ["I25"]  # zbar does read it ...
    assert decode(img) == []  # ... but it is not an ITF-14


def test_two_codes_in_one_frame_each_once():
    qr = qr_image(DIGITAL_LINK, scale=3)
    ean = ean13_image("4006381333931", module_px=2, height=80)
    frame = place_on_canvas(qr, x=20, y=20)
    frame = place_on_canvas(ean, x=320, y=340, canvas=frame)
    expected = [Code("ean13", "4006381333931"), Code("qr", DIGITAL_LINK)]
    assert decode(frame) == expected
    # Same codes in other positions: same list (sorted by symbology, text).
    swapped = place_on_canvas(qr, x=400, y=200)
    swapped = place_on_canvas(ean, x=10, y=10, canvas=swapped)
    assert decode(swapped) == expected


def test_same_code_twice_in_one_frame_is_returned_once():
    qr = qr_image("4006381333931", scale=4)
    frame = place_on_canvas(qr, x=10, y=10)
    frame = place_on_canvas(qr, x=400, y=250, canvas=frame)
    assert len(pyzbar.decode(frame)) == 2
    assert decode(frame) == [Code("qr", "4006381333931")]


@pytest.mark.parametrize(
    "frame",
    [
        np.full((480, 640), 255, np.uint8),
        np.zeros((480, 640, 3), np.uint8),
        add_noise(np.full((480, 640), 128, np.uint8), 60, seed=0),
        np.random.default_rng(7).integers(0, 256, (480, 640), dtype=np.uint8),
    ],
    ids=["white", "black-bgr", "grey-noise", "uniform-noise"],
)
def test_frames_without_codes(frame):
    assert decode(frame, SUPPORTED_SYMBOLOGIES) == []


@pytest.mark.parametrize(
    "frame",
    [
        None,
        np.zeros((0, 0), np.uint8),
        np.zeros((480, 0, 3), np.uint8),
        qr_image("4006381333931").astype(np.float32),
        qr_image("4006381333931").astype(np.int16),
        np.dstack([qr_image("4006381333931")] * 4),  # BGRA
        np.dstack([qr_image("4006381333931")] * 2),
        np.zeros((4, 4, 3, 2), np.uint8),
        np.zeros(640, np.uint8),
        np.uint8(0),
        qr_image("4006381333931").tolist(),
        "frame.png",
        b"\x89PNG",
    ],
    ids=["none", "empty", "zero-width", "float", "int16", "4-channel", "2-channel", "4d", "1d", "scalar", "list", "str", "bytes"],
)
def test_garbage_frames_return_empty(frame):
    assert decode(frame) == []


def test_single_channel_3d_and_non_contiguous_frames():
    img = place_on_canvas(ean13_image("4006381333931"))
    assert decode(img[:, :, np.newaxis]) == [Code("ean13", "4006381333931")]
    wide = np.repeat(img, 2, axis=1)[:, ::2]  # a strided view, as a crop of a bigger buffer is
    assert not wide.flags["C_CONTIGUOUS"]
    assert decode(wide) == [Code("ean13", "4006381333931")]


def test_disabled_symbology_is_not_read():
    ean = ean13_image("4006381333931")
    assert decode(ean, symbologies=("qr",)) == []
    assert decode(qr_image("hello"), symbologies=("ean13",)) == []
    assert decode(ean, symbologies="ean13") == [Code("ean13", "4006381333931")]  # a lone name


@pytest.mark.parametrize("symbologies", [(), [], ("pdf417",), ("nope", "")])
def test_no_known_symbology_reads_nothing(symbologies):
    # pyzbar treats an empty symbol list as "everything": decode must not pass one through.
    assert decode(qr_image("hello"), symbologies=symbologies) == []


def test_upc_a_is_reported_as_ean13_when_only_ean13_is_enabled():
    codes = decode(upca_image("036000291452"), symbologies=("ean13",))
    assert codes == [Code("ean13", "0036000291452")]
    assert_product(codes[0], "00036000291452")


def test_default_symbologies():
    assert SYMBOLOGIES == ("qr", "ean13", "ean8", "upca", "upce", "itf14")
    assert set(SYMBOLOGIES) < set(SUPPORTED_SYMBOLOGIES)


def test_symbology_wiring():
    # tests/barcodes.py has no Code 128 encoder, so GS1-128 is covered in test_codes.py and
    # only the name -> zbar symbol wiring is checked here.
    assert decode_module.zbar_symbols(["code128"]) == [pyzbar.ZBarSymbol.CODE128]
    assert decode_module.zbar_symbols(SYMBOLOGIES) == [
        pyzbar.ZBarSymbol.QRCODE,
        pyzbar.ZBarSymbol.EAN13,
        pyzbar.ZBarSymbol.EAN8,
        pyzbar.ZBarSymbol.UPCA,
        pyzbar.ZBarSymbol.UPCE,
        pyzbar.ZBarSymbol.I25,
    ]


def _fake_result(symbol: str, data: bytes):
    return pyzbar.Decoded(data=data, type=symbol, rect=None, polygon=[], quality=1, orientation=None)


def test_non_utf8_payload_falls_back_to_latin1(monkeypatch):
    results = [_fake_result("QRCODE", b"caf\xe9 \xff"), _fake_result("QRCODE", "café".encode())]
    monkeypatch.setattr(decode_module.pyzbar, "decode", lambda image, symbols: results)
    assert decode(np.full((10, 10), 255, np.uint8)) == [Code("qr", "café"), Code("qr", "caf\xe9 \xff")]


def test_only_requested_and_known_results_are_kept(monkeypatch):
    results = [
        _fake_result("I25", b"123457"),
        _fake_result("I25", b"1540014128876a"),
        _fake_result("I25", b"15400141288763"),
        _fake_result("CODE39", b"ABC"),
        _fake_result("Unrecognised type [99]", b"x"),
        _fake_result("EAN13", b"4006381333931"),
        _fake_result("EAN13", b"4006381333931"),
    ]
    monkeypatch.setattr(decode_module.pyzbar, "decode", lambda image, symbols: results)
    assert decode(np.full((10, 10), 255, np.uint8)) == [Code("ean13", "4006381333931"), Code("itf14", "15400141288763")]


@pytest.mark.parametrize("error", [pyzbar.PyZbarError("boom"), cv2.error("bad"), MemoryError(), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x")])
def test_decoder_errors_never_escape(monkeypatch, caplog, error):
    def explode(image, symbols):
        raise error

    monkeypatch.setattr(decode_module.pyzbar, "decode", explode)
    with caplog.at_level(logging.DEBUG, logger="kiosk.decode"):
        assert decode(qr_image("SECRET-PAYLOAD")) == []
    assert type(error).__name__ in caplog.text
    assert "boom" not in caplog.text and "SECRET" not in caplog.text


def test_decode_file(tmp_path):
    path = tmp_path / "frame.png"
    assert cv2.imwrite(str(path), to_bgr(place_on_canvas(ean8_image("96385074"))))
    assert decode_file(path) == [Code("ean8", "96385074")]
    assert decode_file(str(path), symbologies=("qr",)) == []


def test_decode_file_unreadable(tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    assert decode_file(not_an_image) == []
    assert decode_file(tmp_path / "missing.png") == []
    assert decode_file(tmp_path) == []
    assert decode_file("bad\x00path.png") == []


def test_decode_file_is_the_still_path_both_backends_and_dark_mode(tmp_path):
    # decode() is one plain pyzbar pass; decode_file() is what `python -m kiosk decode` prints:
    # both backends, both polarities (kiosk.decoders.decode_still; more in test_decoders.py).
    from barcodes import invert

    dark = invert(place_on_canvas(qr_image(DIGITAL_LINK, scale=4)))
    assert decode(dark) == []
    path = tmp_path / "dark.png"
    assert cv2.imwrite(str(path), dark)
    assert decode_file(path) == [Code("qr", DIGITAL_LINK)]
