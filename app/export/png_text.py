"""PNG text chunks: writing ``tEXt``/``iTXt`` after the header, and reading all text back.

OpenCV's encoder writes no text chunks, so the exporter adds exactly the ones
it means to (see :mod:`app.export.formats`). The reader understands all three
text chunk types, compressed or not, so tests (and users) can check that
nothing else is in the file.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping

__all__ = ["PNG_SIGNATURE", "add_text_chunks", "iter_chunks", "read_text_chunks"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def iter_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """``(type, payload)`` of every chunk of a PNG file, checking lengths and CRCs.

    Raises
    ------
    ValueError
        Not a PNG, truncated, or a chunk with a wrong CRC.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ValueError("truncated PNG chunk")
        payload = data[pos + 8 : end]
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if crc != zlib.crc32(kind + payload) & 0xFFFFFFFF:
            raise ValueError(f"bad CRC in PNG chunk {kind!r}")
        yield kind, payload
        pos = end + 4


def _keyword(key: str) -> bytes:
    raw = key.encode("latin-1")
    if not 1 <= len(raw) <= 79 or b"\0" in raw:
        raise ValueError(f"invalid PNG text keyword {key!r}")
    return raw


def _text_chunk(key: str, value: str) -> bytes:
    try:
        return _chunk(b"tEXt", _keyword(key) + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        # iTXt carries UTF-8 (names in any script); uncompressed, no language tag.
        return _chunk(b"iTXt", _keyword(key) + b"\0\0\0\0\0" + value.encode("utf-8"))


def add_text_chunks(png: bytes, items: Mapping[str, str]) -> bytes:
    """``png`` with one text chunk per item inserted right after ``IHDR``.

    Latin-1 text goes into ``tEXt``, anything else into ``iTXt`` (UTF-8).
    """
    chunks = list(iter_chunks(png))
    if not chunks or chunks[0][0] != b"IHDR":
        raise ValueError("PNG without IHDR")
    out = [PNG_SIGNATURE, _chunk(*chunks[0])]
    out += [_text_chunk(k, v) for k, v in items.items()]
    out += [_chunk(kind, payload) for kind, payload in chunks[1:]]
    return b"".join(out)


def read_text_chunks(png: bytes) -> list[tuple[str, str]]:
    """Every ``(keyword, text)`` in ``tEXt``, ``zTXt`` and ``iTXt`` chunks, decompressed."""
    out: list[tuple[str, str]] = []
    for kind, payload in iter_chunks(png):
        if kind == b"tEXt":
            key, _, text = payload.partition(b"\0")
            out.append((key.decode("latin-1"), text.decode("latin-1")))
        elif kind == b"zTXt":
            key, _, rest = payload.partition(b"\0")
            out.append((key.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")))
        elif kind == b"iTXt":
            key, _, rest = payload.partition(b"\0")
            compressed = rest[0]
            _lang, _, rest = rest[2:].partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            if compressed:
                text = zlib.decompress(text)
            out.append((key.decode("latin-1"), text.decode("utf-8")))
    return out
