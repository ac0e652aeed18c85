"""A progressive JPEG cut down to the scans that a decode at 1/8 scale reads. Pure: bytes in,
bytes out (no pyvips, no Thumbor).

At 1/8, libjpeg computes each 8x8 block of a component whose DCT scaled size is 1 from its DC
coefficient alone (``jpeg_idct_1x1``, jidctred.c). Which components those are, libjpeg decides
in ``jpeg_calc_output_dimensions`` (jdmaster.c): it scales subsampled chroma up by a larger IDCT
instead of upsampling, so the chroma of a 4:2:0 JPEG gets size 2, whose reduced IDCT reads AC
coefficients up to the seventh row and column; the luma, and every component of a 4:4:4 or
grayscale JPEG, get size 1. A progressive JPEG stores DC and AC coefficients in separate scans,
and the AC scans are most of the file and most of its decode (entropy decoding at full
resolution, whatever the scale). :func:`for_eighth_scale` drops the AC scans of the size-1
components and puts one synthetic AC scan per such component in their place, which says "all
zero" in a few end-of-band runs: with every AC coefficient known, libjpeg skips block smoothing,
whose estimate from neighbouring DC values would otherwise change the DC-only blocks
(libjpeg-turbo's jdcoefct.c). Decoded at 1/8 the result has the original's pixels, bit for bit
(``tests/test_jpeg_scans.py`` checks it over subsamplings, restart intervals, scan scripts and odd
sizes); at any other scale it must not be used.

Anything this does not recognise gives ``None`` (decode the original): baseline and lossless
JPEGs, arithmetic coding, 12-bit samples, a second frame, a scan cut short, more segments than a
real file has.
"""

from __future__ import annotations

import re
import struct

__all__ = ["for_eighth_scale"]

#: the end of a scan's entropy-coded data: a marker (0xFF not followed by a stuffed 0x00, a
#: restart marker RST0-7 or a fill byte)
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOI, _EOI, _SOS, _DHT, _DNL = 0xD8, 0xD9, 0xDA, 0xC4, 0xDC
_PROGRESSIVE_HUFFMAN = 0xC2
#: start-of-frame markers other than the progressive Huffman one (DHT, JPG and DAC excluded)
_OTHER_FRAMES = frozenset(range(0xC0, 0xD0)) - {_PROGRESSIVE_HUFFMAN, _DHT, 0xC8, 0xCC}
#: a real progressive JPEG has tens of segments (mozjpeg's scan optimisation: under 100); a file
#: of endless tiny segments is not worth walking in Python
MAX_SEGMENTS = 1000
#: the longest end-of-band run one symbol codes (EOB14 with its 14 extra bits)
_MAX_EOB_RUN = 32767
#: DRI with interval 0: no restart markers in the scans that follow (ours)
_NO_RESTARTS = b"\xff\xdd\x00\x04\x00\x00"
#: Huffman AC table 0 with the 15 symbols EOB0..EOB14 (0xr0), code r in 4 bits each
_EOB_TABLE = (b"\xff\xc4" + struct.pack(">H", 2 + 1 + 16 + 15) + b"\x10"
              + bytes([0, 0, 0, 15] + [0] * 12) + bytes(r << 4 for r in range(15)))


class _NotForUs(Exception):
    """Not a JPEG this module can cut down: decode the original."""


def for_eighth_scale(data: bytes) -> bytes | None:
    """``data`` (a progressive JPEG) without the scans a decode at 1/8 scale does not read, or
    ``None`` when there is nothing to drop or ``data`` is not a JPEG this handles. The result
    must only be decoded at 1/8 (libjpeg ``scale_denom`` 8, libvips ``shrink=8``)."""
    try:
        return _cut(memoryview(data))
    except (_NotForUs, IndexError, struct.error):
        return None


def _cut(data: memoryview) -> bytes | None:
    if bytes(data[:2]) != b"\xff\xd8":
        raise _NotForUs
    kept: list[memoryview | bytes] = [data[:2]]
    blocks: dict[int, int] = {}  # size-1 component id -> its blocks
    dropped: set[int] = set()
    position, segments = 2, 0
    while True:
        segments += 1
        if segments > MAX_SEGMENTS or data[position] != 0xFF:
            raise _NotForUs
        while data[position + 1] == 0xFF:  # fill bytes before a marker
            position += 1
        marker = data[position + 1]
        if marker == _EOI:
            break
        if marker in (_SOI, _DNL) or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            raise _NotForUs
        (length,) = struct.unpack_from(">H", data, position + 2)
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise _NotForUs
        if marker in _OTHER_FRAMES or (marker == _PROGRESSIVE_HUFFMAN and blocks):
            raise _NotForUs
        if marker == _PROGRESSIVE_HUFFMAN:
            blocks = _eighth_scale_components(data[position + 4:end])
            if not blocks:
                raise _NotForUs  # no component decodes from DC alone (cannot happen in practice)
        if marker == _SOS:
            if not blocks:
                raise _NotForUs  # a scan before the frame
            stop = _scan_end(data, end)
            components, spectral_start = _scan(data[position + 4:end])
            if spectral_start > 0 and components <= blocks.keys():
                dropped |= components
            else:
                kept.append(data[position:stop])
            position = stop
            continue
        kept.append(data[position:end])
        position = end
    if not dropped:
        return None
    kept.append(_NO_RESTARTS)
    kept += [_zero_ac_scan(component, blocks[component]) for component in sorted(dropped)]
    kept.append(b"\xff\xd9")
    return b"".join(kept)


def _eighth_scale_components(frame: memoryview) -> dict[int, int]:
    """{component id: blocks} of the components whose DCT scaled size is 1 at 1/8 scale, from
    the frame header (after its length): jdmaster.c doubles a component's size while the
    largest sampling factors are multiples of twice its own (and twice its size so far)."""
    precision, height, width, count = struct.unpack_from(">BHHB", frame)
    if precision != 8 or not (1 <= count <= 4) or len(frame) != 6 + 3 * count or not (height and width):
        raise _NotForUs
    sampling = {}
    for i in range(count):
        component, factors = frame[6 + 3 * i], frame[7 + 3 * i]
        h, v = factors >> 4, factors & 15
        if not (1 <= h <= 4 and 1 <= v <= 4) or component in sampling:
            raise _NotForUs
        sampling[component] = (h, v)
    max_h = max(h for h, _ in sampling.values())
    max_v = max(v for _, v in sampling.values())
    return {
        component: -(-width * h // (max_h * 8)) * -(-height * v // (max_v * 8))
        for component, (h, v) in sampling.items()
        if max_h % (2 * h) or max_v % (2 * v)
    }


def _scan(header: memoryview) -> tuple[set[int], int]:
    """(component ids, spectral selection start) of a scan header (after its length)."""
    count = header[0]
    if not (1 <= count <= 4) or len(header) != 4 + 2 * count:
        raise _NotForUs
    return {header[1 + 2 * i] for i in range(count)}, header[1 + 2 * count]


def _scan_end(data: memoryview, start: int) -> int:
    match = _SCAN_END.search(data, start)
    if match is None:
        raise _NotForUs  # cut short: let the decoder say what it makes of it
    return match.start()


def _zero_ac_scan(component: int, blocks: int) -> bytes:
    """An AC first scan (1-63, full precision) of ``component`` in which every block is an end
    of band, as end-of-band runs; with the Huffman table it uses."""
    bits = _Bits()
    while blocks:
        run = min(blocks, _MAX_EOB_RUN)
        r = run.bit_length() - 1
        bits.put(r, 4)  # symbol EOBr: code r
        bits.put(run - (1 << r), r)
        blocks -= run
    header = b"\xff\xda" + struct.pack(">HBBBBBB", 8, 1, component, 0x00, 1, 63, 0)
    return _EOB_TABLE + header + bits.flush()


class _Bits:
    """Entropy-coded bytes, most significant bit first, 0xFF stuffed with 0x00."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.value = 0
        self.count = 0

    def put(self, value: int, count: int) -> None:
        self.value = (self.value << count) | value
        self.count += count
        while self.count >= 8:
            self.count -= 8
            byte = (self.value >> self.count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)
        self.value &= (1 << self.count) - 1

    def flush(self) -> bytes:
        if self.count:
            pad = 8 - self.count
            self.put((1 << pad) - 1, pad)  # padded with 1-bits, as the standard asks
        return bytes(self.out)
