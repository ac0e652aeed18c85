"""The public surface of thumbor_plugins.urls, pinned, and its purity."""

import pathlib
import subprocess
import sys

import thumbor_plugins.urls as urls

EXPECTED = [
    "BadSignature", "Expired", "ExpiryRequired", "Filter", "LifetimeTooLong", "MalformedUrl",
    "NotAPreset", "Params", "Signer", "UnsafeNotAllowed", "UrlError", "build_url", "cache_max_age",
    "generate", "parse", "split_signed", "verify_request",
]


def test_public_api_is_pinned():
    assert urls.__all__ == EXPECTED
    assert all(hasattr(urls, name) for name in EXPECTED)


def _imported_by(module):
    """Top-level modules that importing ``module`` adds in a fresh interpreter."""
    code = ("import sys; before = set(sys.modules); "
            f"import {module}; "
            "print(' '.join({m.split('.')[0] for m in set(sys.modules) - before}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).parent.parent).stdout
    return set(out.split())


HEAVY = {"thumbor", "libthumbor", "tornado", "boto3", "botocore", "aiobotocore", "aiohttp", "PIL", "cv2"}


def test_urls_package_imports_only_stdlib():
    imported = _imported_by("thumbor_plugins.urls") - {"thumbor_plugins"}
    assert imported - set(sys.stdlib_module_names) == set()


def test_url_command_imports_neither_thumbor_nor_s3():
    assert _imported_by("thumbor_plugins.cli.url") & HEAVY == set()
