"""Recognising an image format from a file's first bytes, for errors on unreadable files."""

from __future__ import annotations

_SIGNATURES = {
    b"\x89PNG": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"RIFF": "WebP",
}


def sniff_format(data: bytes) -> str | None:
    """The format whose signature `data` starts with, or None: tells "corrupt PNG" from
    "not an image" when Pillow cannot identify a file."""
    return next((fmt for sig, fmt in _SIGNATURES.items() if data.startswith(sig)), None)
