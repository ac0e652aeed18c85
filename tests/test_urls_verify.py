"""verify_request: each test names the attack it stops."""

import re

import pytest
from libthumbor import CryptoURL
from libthumbor.url_signers.base64_hmac_sha1 import UrlSigner

from thumbor_plugins.urls import (
    BadSignature,
    Expired,
    ExpiryRequired,
    LifetimeTooLong,
    MalformedUrl,
    NotAPreset,
    Params,
    Signer,
    UnsafeNotAllowed,
    UrlError,
    build_url,
    cache_max_age,
    parse,
    verify_request,
)

KEY = "my-security-key"
SIGNER = Signer([KEY])
NOW = 1_767_225_600.0
LATER = int(NOW) + 3600


def signed(path, signer=SIGNER):
    return f"/{signer.sign(path)}/{path}"


def verify(raw, **kw):
    kw.setdefault("signer", SIGNER)
    kw.setdefault("now", NOW)
    return verify_request(raw, **kw)


def test_accepts_signed_expiring_url():
    params = verify(signed(f"300x200/filters:quality(80):expires({LATER})/images/a.jpg"))
    assert params == parse(f"300x200/filters:quality(80):expires({LATER})/images/a.jpg")
    assert params.expires_at == LATER


def test_should_reject_expiry_changed():
    good = signed(f"300x200/filters:expires({LATER})/images/a.jpg")
    with pytest.raises(BadSignature) as exc:
        verify(good.replace(str(LATER), str(LATER + 86400 * 365)))
    assert exc.value.status == 403 and exc.value.reason == "bad_signature"


def test_should_reject_expires_filter_removed():
    sig = SIGNER.sign(f"300x200/filters:expires({LATER})/images/a.jpg")
    with pytest.raises(BadSignature):
        verify(f"/{sig}/300x200/images/a.jpg")


def test_should_reject_expires_filter_moved():
    sig = SIGNER.sign(f"300x200/filters:quality(80):expires({LATER})/images/a.jpg")
    with pytest.raises(BadSignature):
        verify(f"/{sig}/300x200/filters:expires({LATER}):quality(80)/images/a.jpg")


def test_should_reject_expires_filter_duplicated():
    # Even if a careless signer signed it: which of the two would count is ambiguous.
    with pytest.raises(MalformedUrl):
        verify(signed(f"filters:expires({LATER}):expires(9999999999)/images/a.jpg"))


def test_should_reject_signature_from_other_path():
    sig = SIGNER.sign("300x200/images/public.jpg")
    with pytest.raises(BadSignature):
        verify(f"/{sig}/300x200/images/private.jpg")


def test_should_reject_other_deployments_key():
    with pytest.raises(BadSignature):
        verify(signed("300x200/images/a.jpg", Signer(["someone-elses-key"])))


def test_should_reject_truncated_signature():
    sig = SIGNER.sign("images/a.jpg")
    with pytest.raises(BadSignature):
        verify(f"/{sig[:-1]}/images/a.jpg")
    with pytest.raises(BadSignature):
        verify(f"/{sig.rstrip('=')}/images/a.jpg")


def test_should_reject_padded_signature():
    sig = SIGNER.sign("images/a.jpg")
    for bad in (sig + "=", sig + "A", " " + sig, sig.replace("=", "%3D")):
        with pytest.raises(BadSignature):
            verify(f"/{bad}/images/a.jpg")


@pytest.mark.parametrize(("signed_path", "variant"), [
    ("images/a.jpg", "images/%61.jpg"),
    ("images/a%2Bb.jpg", "images/a%2bb.jpg"),
    ("images/a%2Bb.jpg", "images/a+b.jpg"),
    ("images/a%20b.jpg", "images/a+b.jpg"),
    ("300x200/images/a.jpg", "300x200/images%2Fa.jpg"),
    ("300x200/images/a.jpg", "%3300x200/images/a.jpg"),
    ("300x200/images/a.jpg", "300x200//images/a.jpg"),
])
def test_should_reject_percent_encoded_variant(signed_path, variant):
    sig = SIGNER.sign(signed_path)
    with pytest.raises(BadSignature):
        verify(f"/{sig}/{variant}")


def test_should_reject_sha1_url_when_server_wants_sha256():
    with pytest.raises(BadSignature):
        verify(signed("images/a.jpg"), signer=Signer([KEY], "sha256"))


def test_rotated_key_still_verifies():
    old_url = signed(f"filters:expires({LATER})/images/a.jpg", Signer(["old-key"]))
    assert verify(old_url, signer=Signer(["new-key", "old-key"])).image == "images/a.jpg"


def test_expired_link_is_410():
    with pytest.raises(Expired) as exc:
        verify(signed(f"filters:expires({int(NOW) - 1})/images/a.jpg"))
    assert exc.value.status == 410 and exc.value.reason == "expired"


def test_link_expiring_right_now_is_expired():
    with pytest.raises(Expired):
        verify(signed(f"filters:expires({int(NOW)})/images/a.jpg"))


def test_should_check_signature_before_reading_options():
    # A forged URL must get 403 whatever it contains, never reveal how it would parse.
    for path in ("filters:expires(0)/a.jpg", "filters:a(1)b(2)/a.jpg", "filters:expires(1):expires(2)/a.jpg"):
        with pytest.raises(BadSignature):
            verify(f"/{'A' * 27}=/{path}")


def test_should_reject_unsafe_when_disabled():
    with pytest.raises(UnsafeNotAllowed) as exc:
        verify("/unsafe/300x200/images/a.jpg")
    assert exc.value.status == 403


def test_unsafe_when_allowed_still_checks_expiry():
    assert verify("/unsafe/300x200/images/a.jpg", allow_unsafe=True).width == 300
    with pytest.raises(Expired):
        verify("/unsafe/filters:expires(1)/images/a.jpg", allow_unsafe=True)


def test_should_reject_permanent_link_when_expiry_required():
    with pytest.raises(ExpiryRequired) as exc:
        verify(signed("images/a.jpg"), require_expires=True)
    assert exc.value.status == 403
    assert verify(signed(f"filters:expires({LATER})/images/a.jpg"), require_expires=True).expires_at == LATER


def test_should_reject_lifetime_over_maximum():
    with pytest.raises(LifetimeTooLong) as exc:
        verify(signed(f"filters:expires({LATER})/images/a.jpg"), max_lifetime=3599)
    assert exc.value.status == 403
    assert verify(signed(f"filters:expires({LATER})/images/a.jpg"), max_lifetime=3600).expires_at == LATER


@pytest.mark.parametrize("raw", ["", "images/a.jpg", "/onlyonesegment", "//images/a.jpg"])
def test_malformed_shape_is_400(raw):
    with pytest.raises(MalformedUrl) as exc:
        verify(raw)
    assert exc.value.status == 400


def test_signed_but_malformed_is_400():
    with pytest.raises(MalformedUrl):
        verify(signed("filters:expires(soon)/images/a.jpg"))


@pytest.mark.parametrize(("cls", "status", "reason"), [
    (MalformedUrl, 400, "malformed"), (BadSignature, 403, "bad_signature"),
    (UnsafeNotAllowed, 403, "unsafe_not_allowed"), (Expired, 410, "expired"),
    (ExpiryRequired, 403, "expiry_required"), (LifetimeTooLong, 403, "lifetime_too_long"),
    (NotAPreset, 403, "not_a_preset"),
])
def test_errors_carry_status_and_reason(cls, status, reason):
    err = cls()
    assert isinstance(err, UrlError) and (err.status, err.reason, str(err)) == (status, reason, reason)


def test_cache_max_age():
    assert cache_max_age(Params("a.jpg"), NOW, 3600) is None
    expiring = parse(f"filters:expires({int(NOW) + 100})/a.jpg")
    assert cache_max_age(expiring, NOW, 3600) == 100
    assert cache_max_age(expiring, NOW + 0.5, 3600) == 99
    assert cache_max_age(expiring, NOW, 60) == 60
    assert cache_max_age(expiring, NOW + 500, 60) == 0


# --- interoperability with libthumbor, the reference Thumbor client -------------------------

def test_libthumbor_url_passes_verify():
    url = CryptoURL(KEY).generate(width=300, height=200, smart=True, image_url="images/a.jpg",
                                  filters=[f"expires({LATER})"])
    params = verify(url)
    assert (params.width, params.height, params.smart, params.image) == (300, 200, True, "images/a.jpg")
    assert params.expires_at == LATER


@pytest.mark.parametrize("kwargs", [
    {},
    {"width": 300, "height": 200, "smart": True},
    {"width": 300, "fit_in": True, "filters": "format(webp):quality(80)", "expires_at": LATER, "version": "3f2a"},
])
@pytest.mark.parametrize("image", ["images/a.jpg", "images/プロフィール 画像+1.png"])
def test_build_url_validates_with_libthumbor(image, kwargs):
    url = build_url(image, key=KEY, **kwargs)
    _, sig, path = url.split("/", 2)
    assert UrlSigner(KEY).validate(sig.encode(), path)


# --- filters the server would skip must not pass as signed restrictions -------------------------

KNOWN = {"quality": re.compile(r"quality\((?:\s*(\d+)\s*)\)"), "fill": re.compile(r"fill\((?:\s*([\w#]+)\s*)\)")}


def test_should_reject_a_filter_the_server_does_not_run():
    # a signed Expires(1) would otherwise be skipped by Thumbor: a permanent link that looks expiring
    with pytest.raises(MalformedUrl, match="unknown filter Expires"):
        verify(signed("filters:Expires(1)/images/a.jpg"), known_filters=KNOWN)


def test_should_reject_expires_hidden_in_another_filters_arguments():
    with pytest.raises(MalformedUrl, match="bad arguments for fill"):
        verify(signed("filters:fill(expires(1))/images/a.jpg"), known_filters=KNOWN)


def test_known_filters_and_our_own_pass():
    params = verify(signed(f"filters:quality(80):fill(red):expires({LATER}):v(abc)/images/a.jpg"), known_filters=KNOWN)
    assert params.expires_at == LATER


# --- cost bounds (urls/costs.py) -----------------------------------------------------------------

@pytest.mark.parametrize("filters", [
    "blur(21)", "blur(5,25)", "sharpen(11,1,true)", "noise(101)", "proportion(2.5)",
    "convolution(" + ";".join(["1"] * 64) + ",8,false)",
    ":".join(["grayscale()"] * 11),
])
def test_should_refuse_filters_whose_cost_has_no_bound(filters) -> None:
    from thumbor_plugins.urls.costs import check_costs
    from thumbor_plugins.urls.errors import TooCostly

    params = parse(f"300x200/filters:{filters}/images/a.jpg")
    with pytest.raises(TooCostly) as error:
        check_costs(params)
    assert error.value.status == 400 and error.value.reason == "too_costly"


@pytest.mark.parametrize("filters", [
    "blur(20)", "blur(3,2.5)", "sharpen(2,1,true)", "noise(30)", "proportion(0.5)",
    "convolution(1;2;1;2;4;2;1;2;1,3,false)", ":".join(["grayscale()"] * 10) + ":expires(9999999999):v(1)",
])
def test_filters_within_the_cost_bounds_pass(filters) -> None:
    from thumbor_plugins.urls.costs import check_costs

    check_costs(parse(f"300x200/filters:{filters}/images/a.jpg"))
