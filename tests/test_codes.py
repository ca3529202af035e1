"""Tests for protocol.codes: GS1 check digits, UPC-E, GS1 Digital Link and classification of scans."""

import random

import pytest

from protocol.codes import (
    MAX_TEXT,
    REASONS,
    MemberCandidate,
    Product,
    Unrecognised,
    classify,
    expand_upce,
    gtin_check_digit,
    is_valid_gtin,
    parse_digital_link,
    to_gtin14,
)

# Published examples: GS1 Digital Link standard (09506000134352), Wikipedia EAN-13/EAN-8/
# UPC-A/ITF-14 articles.
GTIN14 = "09506000134352"
EAN13 = "4006381333931"
EAN8 = "96385074"
UPCA = "036000291452"
ITF14 = "15400141288763"
JWS = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJtMSIsInR5cCI6ImFwcCJ9.c2lnbmF0dXJlLWJ5dGVz"


def reason(result) -> str:
    assert isinstance(result, Unrecognised), result
    assert result.reason in REASONS
    return result.reason


# --- check digits -----------------------------------------------------------------------


@pytest.mark.parametrize("digits", [EAN8, UPCA, EAN13, GTIN14, ITF14, "00000000", "012345000065", "5901234123457"])
def test_valid_gtins(digits):
    assert is_valid_gtin(digits)
    assert gtin_check_digit(digits[:-1]) == int(digits[-1])


@pytest.mark.parametrize("digits", ["96385075", "036000291453", "4006381333932", "09506000134353", "15400141288760"])
def test_invalid_check_digits(digits):
    assert not is_valid_gtin(digits)


@pytest.mark.parametrize("digits", ["", "1234567", "12345678901", "123456789012345", "4OO6381333931", "٤006381333931", "abcdefgh"])
def test_not_gtins(digits):
    assert not is_valid_gtin(digits)


def test_every_single_digit_error_is_detected():
    for i in range(len(EAN13)):
        for d in "0123456789":
            if d != EAN13[i]:
                assert not is_valid_gtin(EAN13[:i] + d + EAN13[i + 1 :])


def test_gtin_check_digit_rejects_non_digits():
    with pytest.raises(ValueError):
        gtin_check_digit("12a")


@pytest.mark.parametrize(
    "digits,expected",
    [(EAN8, "00000096385074"), (UPCA, "00036000291452"), (EAN13, "04006381333931"), (GTIN14, GTIN14)],
)
def test_to_gtin14(digits, expected):
    assert to_gtin14(digits) == expected
    assert is_valid_gtin(expected)


@pytest.mark.parametrize("digits", ["4006381333932", "1234567", "", "abc"])
def test_to_gtin14_rejects_invalid(digits):
    with pytest.raises(ValueError):
        to_gtin14(digits)


# --- UPC-E ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "upce,upca",
    [
        ("01234565", "012345000065"),  # last digit 5-9: product digit kept at the end
        ("04252614", "042100005264"),  # Wikipedia example, last digit 0-2
        ("01234505", "012000003455"),  # last digit 0
        ("01234531", "012300000451"),  # last digit 3
        ("01234543", "012340000053"),  # last digit 4
        ("11234562", "112345000062"),  # number system 1
    ],
)
def test_expand_upce(upce, upca):
    assert expand_upce(upce) == upca
    assert is_valid_gtin(upca)


@pytest.mark.parametrize("code", ["01234566", "21234565", "1234565", "012345655", "0123456a", ""])
def test_expand_upce_rejects(code):
    with pytest.raises(ValueError):
        expand_upce(code)


# --- linear symbologies -----------------------------------------------------------------


@pytest.mark.parametrize(
    "symbology,text,gtin",
    [
        ("ean13", EAN13, "04006381333931"),
        ("ean13", "0" + UPCA, "00036000291452"),  # zbar's way of reporting a UPC-A
        ("ean8", EAN8, "00000096385074"),
        ("upca", UPCA, "00036000291452"),
        ("itf14", ITF14, ITF14),
        ("upce", "04252614", "00042100005264"),
        ("upce", "425261", "00042100005264"),  # six digits: number system 0, check computed
        ("EAN13", EAN13, "04006381333931"),  # symbology names are case-insensitive
        ("ean13", f"  {EAN13}\n", "04006381333931"),
    ],
)
def test_linear_products(symbology, text, gtin):
    result = classify(symbology, text)
    assert isinstance(result, Product)
    assert result.gtin == gtin
    assert result.source == symbology.lower()
    assert result.qualifiers == ()


def test_upc_a_as_ean13_and_as_upca_is_the_same_product():
    assert classify("ean13", "0" + UPCA).gtin == classify("upca", UPCA).gtin


@pytest.mark.parametrize(
    "symbology,text,expected",
    [
        ("ean13", "400638133393", "bad_length"),
        ("ean13", "40063813339310", "bad_length"),
        ("ean13", "4006381333932", "bad_check_digit"),
        ("ean13", "40063813339a1", "unknown_format"),
        ("ean8", "9638507", "bad_length"),
        ("ean8", "96385075", "bad_check_digit"),
        ("upca", "0036000291452", "bad_length"),
        ("upca", "036000291453", "bad_check_digit"),
        ("itf14", "123457", "bad_length"),  # zbar's hallucinated short I25
        ("itf14", "1540014128876", "bad_length"),
        ("itf14", "15400141288760", "bad_check_digit"),
        ("upce", "04252615", "bad_check_digit"),
        ("upce", "0425261", "bad_length"),
        ("upce", "24252614", "unknown_format"),  # number systems other than 0/1 do not exist
        ("upce", "x4252614", "unknown_format"),
    ],
)
def test_linear_rejections(symbology, text, expected):
    assert reason(classify(symbology, text)) == expected


@pytest.mark.parametrize(
    "text", ["01" + GTIN14, "]C101" + GTIN14, "\x1d01" + GTIN14, "]C101" + GTIN14 + "10LOT1\x1d21SER9", "01" + GTIN14 + "3103000189"]
)
def test_gs1_128_with_gtin(text):
    assert classify("code128", text) == Product(GTIN14, "code128")


@pytest.mark.parametrize("text,expected", [("HELLO-128", "unknown_format"), ("0212345678901231", "unknown_format"), ("010950600013435", "unknown_format"), ("01" + "09506000134353", "bad_check_digit")])
def test_code128_rejections(text, expected):
    assert reason(classify("code128", text)) == expected


@pytest.mark.parametrize("symbology", ["pdf417", "datamatrix", "", "codabar", None, 13])
def test_unsupported_symbology(symbology):
    assert reason(classify(symbology, EAN13)) == "unsupported_symbology"


# --- empty / too long / never raise -----------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\t\r\n", "\u3000"])
@pytest.mark.parametrize("symbology", ["qr", "ean13", "itf14", "upce"])
def test_empty(symbology, text):
    assert reason(classify(symbology, text)) == "empty"


def test_too_long():
    assert reason(classify("qr", "a" * (MAX_TEXT + 1))) == "too_long"
    assert reason(classify("qr", "1" * (MAX_TEXT + 1))) == "too_long"
    assert reason(classify("qr", "a" * MAX_TEXT)) == "unknown_format"


def test_non_text_is_rejected_not_raised():
    assert reason(classify("qr", None)) == "unknown_format"
    assert reason(classify("qr", b"0950600013435")) == "unknown_format"
    assert reason(parse_digital_link(None)) == "unknown_format"


def test_classify_never_raises_on_random_input():
    rng = random.Random(1234)
    alphabet = "0123456789/.:%?#-_eyJhtps\x00\x1d\r\n \u00e9\u6771\ud800\U0001f600"
    pieces = ["https://", "http://", "/01/", GTIN14, "/10/", "/21/", "/22/", "%", "%2", "%FF", "eyJ", "."]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) if rng.random() < 0.3 else rng.choice(alphabet) for _ in range(rng.randrange(40)))
        for symbology in ("qr", "ean13", "ean8", "upca", "upce", "itf14", "code128", "x"):
            result = classify(symbology, text)
            assert isinstance(result, (Product, MemberCandidate, Unrecognised))
            if isinstance(result, Unrecognised):
                assert result.reason in REASONS
            if isinstance(result, Product):
                assert len(result.gtin) == 14 and is_valid_gtin(result.gtin)
        assert isinstance(parse_digital_link(text), (Product, Unrecognised))


# --- QR: numeric, member tokens, other text ----------------------------------------------


@pytest.mark.parametrize("digits,gtin", [(EAN8, "00000096385074"), (UPCA, "00036000291452"), (EAN13, "04006381333931"), (GTIN14, GTIN14)])
def test_numeric_qr(digits, gtin):
    assert classify("qr", digits) == Product(gtin, "qr-numeric")


def test_numeric_qr_rejections():
    assert reason(classify("qr", "4006381333932")) == "bad_check_digit"
    assert reason(classify("qr", "1234567890")) == "unknown_format"  # not a GTIN length
    assert reason(classify("qr", "٤٠٠٦٣٨١٣٣٣٩٣١")) == "unknown_format"  # Arabic-Indic digits


def test_jwt_looking_qr_is_a_member_candidate():
    assert classify("qr", JWS) == MemberCandidate(JWS)
    assert classify("qr", f"\n {JWS} \r\n") == MemberCandidate(JWS)


@pytest.mark.parametrize(
    "text",
    [
        JWS.rsplit(".", 1)[0],  # two segments
        JWS.rsplit(".", 1)[0] + ".",  # unsigned ("alg": "none")
        JWS + ".extra",
        "abc" + JWS[3:],  # header not a JSON object
        JWS.replace("c2ln", "c2+n"),  # base64, not base64url
        JWS[:20] + " " + JWS[20:],
    ],
)
def test_not_member_tokens(text):
    assert not isinstance(classify("qr", text), MemberCandidate)


@pytest.mark.parametrize("text", ["hello", "WIFI:S:shop;T:WPA;P:secret;;", "ftp://example.com/01/" + GTIN14, "javascript:alert(1)", "mailto:a@b.c"])
def test_other_qr_text_is_unknown(text):
    assert reason(classify("qr", text)) == "unknown_format"


# --- GS1 Digital Link -------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri,gtin,qualifiers",
    [
        (f"https://id.gs1.org/01/{GTIN14}", GTIN14, ()),
        (f"https://example.com/01/{EAN13}", "04006381333931", ()),
        (f"https://example.com/01/{UPCA}", "00036000291452", ()),
        (f"https://example.com/01/{EAN8}", "00000096385074", ()),
        (f"https://example.com/01/{GTIN14}/10/ABC123", GTIN14, (("10", "ABC123"),)),
        (f"https://example.com/01/{GTIN14}/21/456", GTIN14, (("21", "456"),)),
        (f"https://example.com/01/{GTIN14}/22/2A", GTIN14, (("22", "2A"),)),
        (f"https://id.gs1.org/01/{GTIN14}/22/2A/10/ABC123/21/456", GTIN14, (("22", "2A"), ("10", "ABC123"), ("21", "456"))),
        (f"https://id.gs1.org/01/{GTIN14}/10/ABC123/21/456", GTIN14, (("10", "ABC123"), ("21", "456"))),
        (f"https://example.com/01/{GTIN14}?17=201231&linkType=gs1:pip", GTIN14, ()),
        (f"https://example.com/01/{GTIN14}/10/L1?3103=000195#top", GTIN14, (("10", "L1"),)),
        (f"https://brand.example.com/products/food/01/{GTIN14}/10/L1", GTIN14, (("10", "L1"),)),
        (f"https://example.com/x/01/y/01/{GTIN14}", GTIN14, ()),  # "01" inside the custom path
        (f"https://example.com/01/{GTIN14}/10/01", GTIN14, (("10", "01"),)),  # a lot called "01"
        (f"http://example.com/01/{GTIN14}", GTIN14, ()),
        (f"HTTPS://EXAMPLE.COM/01/{GTIN14}", GTIN14, ()),
        (f"https://example.com:8443/01/{GTIN14}/", GTIN14, ()),  # trailing slash
        (f"https://example.com/01/{GTIN14}/10/AB%2F12%2541", GTIN14, (("10", "AB/12%41"),)),
        (f"https://example.com/01/{GTIN14}/21/%41%62%63", GTIN14, (("21", "Abc"),)),
    ],
)
def test_digital_link(uri, gtin, qualifiers):
    expected = Product(gtin, "digital-link", qualifiers)
    assert parse_digital_link(uri) == expected
    assert classify("qr", uri) == expected
    assert classify("qr", f"  {uri}\n") == expected


@pytest.mark.parametrize(
    "uri,expected",
    [
        (f"https://example.com/01/{GTIN14[:-1]}3", "bad_check_digit"),
        ("https://example.com/01/40063813339 32", "bad_digital_link"),
        ("https://example.com/01/4006381333932/10/LOT", "bad_check_digit"),
        (f"https://example.com/01/{GTIN14}/21/SER/10/LOT", "bad_digital_link"),  # wrong order
        (f"https://example.com/01/{GTIN14}/10/LOT/22/2A", "bad_digital_link"),  # wrong order
        (f"https://example.com/01/{GTIN14}/10/A/10/B", "bad_digital_link"),  # repeated
        (f"https://example.com/01/{GTIN14}/99/X", "bad_digital_link"),  # unknown qualifier
        (f"https://example.com/01/{GTIN14}/10", "bad_digital_link"),  # key without value
        (f"https://example.com/01/{GTIN14}/10/", "bad_digital_link"),
        (f"https://example.com/01/{GTIN14}/10//21/X", "bad_digital_link"),
        (f"https://example.com/01/{GTIN14}/10/{'A' * 21}", "bad_digital_link"),  # AI 10 is X..20
        (f"https://example.com/01/{GTIN14}/10/A%20B", "bad_digital_link"),  # space: not GS1 CSET 82
        (f"https://example.com/01/{GTIN14}/10/A%ZZ", "bad_digital_link"),  # malformed escape
        (f"https://example.com/01/{GTIN14}/10/A%FF", "bad_digital_link"),  # not UTF-8
        (f"https://example.com/01/{GTIN14}/10/%C3%A9", "bad_digital_link"),  # é: not CSET 82
        (f"https://example.com/01/{GTIN14}/10/L\t1", "bad_digital_link"),  # control character
        (f"https://exämple.com/01/{GTIN14}", "bad_digital_link"),
        ("https://example.com/01/", "bad_digital_link"),
        ("https://example.com/01/09506000134", "bad_digital_link"),  # 11 digits: not a GTIN length
        ("https://example.com/01/123456789", "bad_digital_link"),  # 9 digits: not a GTIN length
        ("https://example.com/01/abc", "bad_digital_link"),
        (f"https:///01/{GTIN14}", "bad_digital_link"),  # no host
        ("https://example.com/promo/summer", "foreign_url"),
        ("https://example.com", "foreign_url"),
        ("https://example.com/", "foreign_url"),
        (f"https://example.com/?01={GTIN14}", "foreign_url"),
        (f"https://example.com/001/{GTIN14}", "foreign_url"),
        ("http://phish.example/login?next=/01/", "foreign_url"),
    ],
)
def test_digital_link_rejections(uri, expected):
    assert reason(parse_digital_link(uri)) == expected
    assert reason(classify("qr", uri)) == expected


# --- privacy: details never echo the payload ---------------------------------------------


SECRET = "Alice-Smith-1980-4711"


@pytest.mark.parametrize(
    "symbology,text",
    [
        ("qr", SECRET),
        ("qr", f"https://example.com/member/{SECRET}"),
        ("qr", f"https://example.com/01/{GTIN14}/10/{SECRET}-too-long-for-a-lot"),
        ("qr", f"https://example.com/01/{GTIN14}/21/{SECRET}/10/LOT"),
        ("qr", f"https://{SECRET}.example.com/01/{GTIN14}/99/{SECRET}"),
        ("qr", f"https://example.com/01/{SECRET}"),
        ("qr", SECRET * 300),
        ("ean13", SECRET),
        ("upce", SECRET),
        ("itf14", SECRET),
        ("code128", SECRET),
        ("pdf417", SECRET),
        ("qr", "4711" * 5),
        ("ean8", "47114711"),
    ],
)
def test_detail_never_contains_the_payload(symbology, text):
    result = classify(symbology, text)
    assert isinstance(result, Unrecognised)
    assert len(result.detail) <= 80
    for fragment in (text, SECRET, "Alice", "4711"):
        assert fragment not in result.detail
