"""The exporter registry and PNG text chunks."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from app.export.errors import ExportError
from app.export.formats import (
    ImageMetadata,
    PngExporter,
    exporter_for,
    register_exporter,
    registered_exporters,
)
from app.export.png_text import add_text_chunks, iter_chunks, read_text_chunks


def small_png() -> bytes:
    ok, buf = cv2.imencode(".png", np.zeros((4, 5, 3), np.uint8))
    assert ok
    return buf.tobytes()


def chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def test_lookup_by_name_and_extension() -> None:
    assert isinstance(exporter_for("png"), PngExporter)
    assert isinstance(exporter_for("out/Pair.PNG"), PngExporter)
    with pytest.raises(
        ExportError, match=r"cannot export to the extension '\.jpg': supported formats are \.png"
    ):
        exporter_for("pair.jpg")
    with pytest.raises(ExportError, match="cannot export to 'pair'"):
        exporter_for("pair")


def test_first_registered_wins(monkeypatch) -> None:
    import app.export.formats as formats

    monkeypatch.setattr(formats, "_REGISTRY", list(formats._REGISTRY))

    class Other:
        name = "png-other"
        extensions = (".png",)

        def encode(self, image: np.ndarray, metadata: ImageMetadata) -> bytes:
            return b""

    other = Other()
    register_exporter(other)
    assert exporter_for("a.png") is not other  # the built-in one came first
    register_exporter(other, first=True)
    assert exporter_for("a.png") is other
    assert registered_exporters()[0] is other


def test_png_round_trip_and_text_chunks() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    data = PngExporter().encode(image, ImageMetadata("a description", {"Name": "Ünïcödé 名"}))
    decoded = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    assert np.array_equal(decoded, image)  # lossless, RGB order kept
    kinds = [k for k, _ in iter_chunks(data)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    texts = read_text_chunks(data)
    assert texts[0][0] == "Software" and texts[0][1].startswith("PriorSync ")
    assert ("Description", "a description") in texts
    assert ("Name", "Ünïcödé 名") in texts


def test_png_encoder_refuses_non_rgb() -> None:
    with pytest.raises(ExportError, match="cannot encode"):
        PngExporter().encode(np.zeros((4, 4), np.uint8), ImageMetadata())


def test_reader_decompresses_ztxt_and_itxt() -> None:
    png = small_png()
    sig, rest = png[:8], png[8:]
    ihdr_end = 8 + 4 + 4 + 13 + 4
    ztxt = chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"hidden text"))
    itxt = chunk(b"iTXt", b"Title\0\1\0en\0Titel\0" + zlib.compress("zusammengepreßt".encode()))
    data = sig + rest[: ihdr_end - 8] + ztxt + itxt + rest[ihdr_end - 8 :]
    assert read_text_chunks(data) == [("Comment", "hidden text"), ("Title", "zusammengepreßt")]


def test_chunk_reader_checks_crc_and_signature() -> None:
    data = bytearray(add_text_chunks(small_png(), {"Software": "x"}))
    assert read_text_chunks(bytes(data)) == [("Software", "x")]
    data[40] ^= 0xFF
    with pytest.raises(ValueError, match="bad CRC|truncated"):
        read_text_chunks(bytes(data))
    with pytest.raises(ValueError, match="not a PNG"):
        read_text_chunks(b"GIF89a")
    with pytest.raises(ValueError, match="keyword"):
        add_text_chunks(small_png(), {"": "x"})
