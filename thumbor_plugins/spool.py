"""Originals too large to hold in memory, spooled to a temporary file as they download.

Thumbor hands the loader's buffer to the engine as bytes. A :class:`Spooled` original is a
read-only memory map of an already unlinked temporary file: to Thumbor it behaves as bytes
(``startswith``, slices, ``len``: what it reads of the buffer is the header), while the libvips
engine reads the pixels from the file in chunks (:func:`vips_source`), so a 230 MB
PNG never sits in the process's memory. The file has no name from the start: nothing is left
behind when the process dies, and its space is freed when the last reference goes.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from typing import IO, Any


def temporary(directory: str | None = None) -> IO[bytes]:
    """A new temporary file, already unlinked (POSIX), to write an original into."""
    return tempfile.TemporaryFile(dir=directory or None)


class Spooled(mmap.mmap):
    """The bytes of ``file`` (written, non-empty), read-only, without reading them into memory."""

    file: IO[bytes]

    def __new__(cls, file: IO[bytes]) -> Spooled:
        file.flush()
        self = super().__new__(cls, file.fileno(), 0, access=mmap.ACCESS_READ)
        self.file = file
        return self

    def startswith(self, prefix: bytes | tuple[bytes, ...], start: int = 0) -> bool:
        """As ``bytes.startswith`` (Thumbor's format sniffing calls it)."""
        prefixes = prefix if isinstance(prefix, tuple) else (prefix,)
        return any(self[start:start + len(p)] == p for p in prefixes)

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        super().close()
        self.file.close()


def vips_source(buffer: Any) -> Any:
    """A ``pyvips.Source`` for an original: read from the file of a :class:`Spooled` one, else
    from the bytes in memory (no copy).

    The file is read through callbacks, chunk by chunk, at offsets of its own: given a
    descriptor, libvips would map the whole file into memory for its JPEG decoder, and every
    page read would count in the process's memory (a 500 MB original, 500 MB more)."""
    import pyvips

    if not isinstance(buffer, Spooled):
        return pyvips.Source.new_from_memory(buffer)
    size = len(buffer)
    position = 0

    def read(length: int) -> bytes:
        # libvips reads when the pixels are computed, long after Thumbor let go of the buffer:
        # this closure keeps it (and its file) open as long as the source lives
        nonlocal position
        chunk = os.pread(buffer.fileno(), length, position)
        position += len(chunk)
        return chunk

    def seek(offset: int, whence: int) -> int:
        nonlocal position
        position = {os.SEEK_SET: 0, os.SEEK_CUR: position, os.SEEK_END: size}[whence] + offset
        return position

    source = pyvips.SourceCustom()
    source.on_read(read)
    source.on_seek(seek)
    return source
