"""imgstack: Thumbor plugins for a private, self-hosted image service backed by MinIO/S3.

Thumbor-facing modules are flat because ``thumbor.conf`` names them:

- ``thumbor_plugins.loader``          LOADER
- ``thumbor_plugins.result_storage``  RESULT_STORAGE
- ``thumbor_plugins.app``             APP_CLASS (signature/expiry enforcement, extra routes)

``thumbor_plugins.urls`` is the one URL grammar and signer (pure), ``thumbor_plugins.s3`` the one
place that talks to S3, ``thumbor_plugins.config`` every setting of ours.
"""


def __getattr__(name: str) -> str:
    # The version is written once, in pyproject.toml; this is the installed distribution's, read
    # only when asked so that importing the package stays free.
    if name == "__version__":
        from importlib.metadata import version

        return version("imgstack")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
