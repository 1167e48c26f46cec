"""Small, valid, deterministic documents: certificate PDFs and building-plan PNGs.

Only the standard library, no timestamps, no compression whose output depends on the zlib version
(PNG data is "stored" deflate, built here), so the same inputs give the same bytes on any machine.
Noise comes from SHAKE-256 of the inputs, not from `random`, for the same reason.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence

PDF_MAGIC = b"%PDF-"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def sniff_content_type(head: bytes) -> str | None:
    """The type by magic bytes (never trust the client's Content-Type); None for anything else."""
    if head.startswith(PDF_MAGIC):
        return "application/pdf"
    if head.startswith(PNG_MAGIC):
        return "image/png"
    if head.startswith(JPEG_MAGIC):
        return "image/jpeg"
    return None


def _pdf_text(s: str) -> str:
    ascii_only = s.encode("ascii", "replace").decode("ascii")
    return ascii_only.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def certificate_pdf(title: str, lines: Sequence[str], footer: str) -> bytes:
    """A one-page A4 PDF 1.4 with a title, body lines and a footer (Helvetica, no fonts embedded)."""
    ops = ["BT", "/F1 20 Tf", "72 770 Td", f"({_pdf_text(title)}) Tj", "/F1 12 Tf", "0 -40 Td"]
    for line in lines:
        ops += [f"({_pdf_text(line)}) Tj", "0 -20 Td"]
    ops += ["ET", "BT", "/F1 8 Tf", "72 60 Td", f"({_pdf_text(footer)}) Tj", "ET"]
    ops += ["0.5 w", "60 740 m 535 740 l S", "60 80 m 535 80 l S"]
    stream = "\n".join(ops).encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode() + b"0000000000 65535 f \n"
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _stored_deflate(data: bytes) -> bytes:
    """zlib stream with 'stored' (uncompressed) deflate blocks: identical bytes on every zlib version."""
    out = bytearray(b"\x78\x01")
    step = 65535
    for start in range(0, max(len(data), 1), step):
        block = data[start : start + step]
        final = 1 if start + step >= len(data) else 0
        out += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block
    out += struct.pack(">I", zlib.adler32(data))
    return bytes(out)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_PAPER = bytes(0xE0 | (b & 0x1F) for b in range(256))  # noise mapped to light grey "paper"


def plan_png(key: str, target_bytes: int) -> bytes:
    """A grayscale 'scanned building plan': paper noise, a grid and a building outline, about target_bytes."""
    width = 512
    height = max(8, target_bytes // (width + 1))
    digest = hashlib.shake_256(f"plan:{key}".encode())
    raw = bytearray(digest.digest(height * (width + 1)).translate(_PAPER))
    stride = width + 1
    raw[0::stride] = bytes(height)  # filter byte 0 ("None") at the start of every row
    for col in range(1, width, 32):  # vertical grid lines
        raw[col::stride] = b"\xb0" * height
    for row in range(0, height, 32):  # horizontal grid lines
        raw[row * stride + 1 : (row + 1) * stride] = b"\xb0" * width
    seed = hashlib.sha256(key.encode()).digest()
    x0, y0 = 40 + seed[0] % 120, 20 + seed[1] % max(1, height // 4)
    x1, y1 = width - 40 - seed[2] % 120, max(y0 + 4, height - 20 - seed[3] % max(1, height // 4))
    for row in (y0, min(y1, height - 1)):  # outline: top and bottom walls
        raw[row * stride + 1 + x0 : row * stride + 1 + x1] = b"\x20" * (x1 - x0)
    bottom = min(y1, height - 1)
    for col in (x0, x1):  # side walls
        raw[y0 * stride + 1 + col : bottom * stride + 2 + col : stride] = b"\x20" * (bottom - y0 + 1)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        PNG_MAGIC
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", _stored_deflate(bytes(raw)))
        + _png_chunk(b"IEND", b"")
    )
