"""Metadata a JPEG file carries beside its image: ICC profile, EXIF, XMP, comments and the
JFIF pixel density (print resolution).

`Metadata` holds them as bytes; `segments` lays them out as the APPn and COM segments other
software reads (after the JFIF APP0, in this order):

* EXIF: one APP1 segment, "Exif\\0\\0" and the TIFF structure (at most 65,527 bytes);
* XMP: one APP1 segment, "http://ns.adobe.com/xap/1.0/\\0" and the packet (at most 65,502 bytes;
  the extended-XMP scheme for larger packets is not written);
* ICC profile: APP2 "ICC_PROFILE\\0" segments, each with its sequence number and the count,
  65,519 bytes of profile per segment (ICC.1:2010 Annex B.4), so profiles over 64 KB span
  several segments, up to 255 of them;
* comment: COM segments of up to 65,533 bytes each;
* density: the JFIF APP0 segment's units and densities (`jfif_segment`), which every file has.

The EXIF orientation tag is kept as it is: pixels are never rotated (as `jpegtran -copy all`).
Stripping metadata keeps it too, alone in a minimal EXIF (`orientation_exif`), so that the
photo still displays upright.
Oversize EXIF or XMP raises `ValueError` naming the size; nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import math
import struct

from djpeg.exact import writer
from djpeg.exact.markers import header_segments

_EXIF_HEADER = b"Exif\x00\x00"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_ICC_HEADER = b"ICC_PROFILE\x00"
_MAX_PAYLOAD = 65533                       # a segment's length field counts itself (2 bytes)
ICC_CHUNK = _MAX_PAYLOAD - len(_ICC_HEADER) - 2


def segment_bytes(marker: int, payload: bytes) -> bytes:
  """The segment `FF marker`, its length and `payload`, as a file holds it."""
  return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _as_bytes(name: str, value) -> bytes | None:
  if value is None:
    return None
  if isinstance(value, str):
    return value.encode("utf-8")
  if isinstance(value, (bytes, bytearray, memoryview)):
    return bytes(value)
  if hasattr(value, "tobytes"):            # PIL.Image.Exif
    return value.tobytes()
  raise ValueError(f"{name} must be bytes (or str); got {type(value).__name__}.")


@dataclasses.dataclass(frozen=True)
class Metadata:
  """ICC profile, EXIF, XMP and comment of a file, as bytes (None: absent).

  Attributes:
    icc_profile: the ICC profile itself.
    exif: the EXIF TIFF structure, with or without the "Exif\\0\\0" prefix JPEG files use.
    xmp: the XMP packet (UTF-8 XML).
    comment: the comment's bytes.
    density: the JFIF `(units, x_density, y_density)`: units 0 (an aspect ratio), 1 (dots per
      inch) or 2 (dots per cm), densities in 1..65535; None: (0, 1, 1).
  """
  icc_profile: bytes | None = None
  exif: bytes | None = None
  xmp: bytes | None = None
  comment: bytes | None = None
  density: tuple[int, int, int] | None = None

  def __post_init__(self):
    if self.density is not None:
      units, x, y = self.density
      if units not in (0, 1, 2) or not (1 <= x <= 65535 and 1 <= y <= 65535):
        raise ValueError(f"density must be (units 0, 1 or 2, x and y in 1..65535); got "
                         f"{self.density!r}.")

  @classmethod
  def of(cls, *, icc_profile=None, exif=None, xmp=None, comment=None, dpi=None) -> Metadata:
    """From Pillow's keyword values: bytes, str (XMP, comment) or a `PIL.Image.Exif`; `dpi` an
    `(x, y)` pair of dots per inch, rounded to integers as Pillow writes them."""
    exif = _as_bytes("exif", exif)
    if exif and exif.startswith(_EXIF_HEADER):
      exif = exif[len(_EXIF_HEADER):]
    density = None
    if dpi is not None:
      try:
        x, y = (float(v) for v in dpi)
      except (TypeError, ValueError):
        raise ValueError(f"dpi must be an (x, y) pair of numbers; got {dpi!r}.") from None
      if not all(math.isfinite(v) and 0.5 <= v < 65535.5 for v in (x, y)):
        raise ValueError(f"dpi must be in 1..65535 dots per inch; got {dpi!r}.")
      density = (1, int(x + 0.5), int(y + 0.5))
    return cls(icc_profile=_as_bytes("icc_profile", icc_profile) or None, exif=exif or None,
               xmp=_as_bytes("xmp", xmp) or None, comment=_as_bytes("comment", comment) or None,
               density=density)

  def __bool__(self) -> bool:
    return any(v is not None for v in (self.icc_profile, self.exif, self.xmp, self.comment,
                                       self.density))

  def jfif_segment(self) -> bytes:
    """The JFIF APP0 segment, with `density` (default: none, aspect 1:1)."""
    return writer.jfif_segment(*(self.density or (0, 1, 1)))

  def segments(self) -> list[bytes]:
    """The APP1 (EXIF, XMP), APP2 (ICC) and COM segments, markers included."""
    out = []
    if self.exif is not None:
      payload = _EXIF_HEADER + self.exif
      if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"EXIF of {len(self.exif)} bytes does not fit one APP1 segment "
                         f"(at most {_MAX_PAYLOAD - len(_EXIF_HEADER)}); strip or shrink it.")
      out.append(segment_bytes(0xE1, payload))
    if self.xmp is not None:
      payload = _XMP_HEADER + self.xmp
      if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"XMP packet of {len(self.xmp)} bytes does not fit one APP1 segment "
                         f"(at most {_MAX_PAYLOAD - len(_XMP_HEADER)}); extended XMP is not "
                         "written: strip or shrink it.")
      out.append(segment_bytes(0xE1, payload))
    if self.icc_profile is not None:
      chunks = [self.icc_profile[i:i + ICC_CHUNK]
                for i in range(0, len(self.icc_profile), ICC_CHUNK)]
      if len(chunks) > 255:
        raise ValueError(f"ICC profile of {len(self.icc_profile)} bytes needs more than 255 "
                         "APP2 segments.")
      out += [segment_bytes(0xE2, _ICC_HEADER + bytes([i + 1, len(chunks)]) + chunk)
              for i, chunk in enumerate(chunks)]
    if self.comment is not None:
      out += [segment_bytes(0xFE, self.comment[i:i + _MAX_PAYLOAD])
              for i in range(0, len(self.comment), _MAX_PAYLOAD)]
    return out


def jfif_density(segments: list[tuple[int, bytes]]) -> tuple[int, int, int] | None:
  """The `(units, x, y)` of the first JFIF APP0 segment among (marker, payload) segments, when
  it is well formed (None otherwise, or for the default (0, 1, 1))."""
  for marker, payload in segments:
    if marker == 0xE0 and payload[:5] == b"JFIF\x00" and len(payload) >= 12:
      units, x, y = struct.unpack(">BHH", payload[7:12])
      if units in (0, 1, 2) and x and y and (units, x, y) != (0, 1, 1):
        return units, x, y
      return None
  return None


def exif_orientation(exif: bytes | None) -> int | None:
  """The Orientation tag (0x0112) of IFD0 of an EXIF TIFF structure (with or without the
  "Exif\\0\\0" prefix): 1..8, or None when absent or unreadable."""
  if not exif:
    return None
  tiff = exif[len(_EXIF_HEADER):] if exif.startswith(_EXIF_HEADER) else exif
  order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(bytes(tiff[:4]))
  if order is None or len(tiff) < 8:
    return None
  (ifd,) = struct.unpack(order + "I", tiff[4:8])
  if ifd + 2 > len(tiff):
    return None
  (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
  for i in range(count):
    entry = tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
    if len(entry) < 12:
      return None
    tag, kind, n = struct.unpack(order + "HHI", entry[:8])
    if tag == 0x0112:
      value = struct.unpack(order + "H", entry[8:10])[0] if kind == 3 and n == 1 else None
      return value if value in range(1, 9) else None
  return None


def orientation_segments(segments: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
  """What `strip` keeps of a file's (marker, payload) segments: an EXIF APP1 holding only
  the Orientation tag when the first EXIF segment says other than 1 (an unrotated portrait
  photo would otherwise display sideways), else nothing."""
  exif = next((p for m, p in segments if m == 0xE1 and p.startswith(_EXIF_HEADER)), None)
  kept = orientation_exif(exif_orientation(exif))
  return [] if kept is None else [(0xE1, _EXIF_HEADER + kept)]


def orientation_exif(orientation: int | None) -> bytes | None:
  """A minimal EXIF TIFF structure holding only the Orientation tag `orientation` (2..8);
  None for 1 or None (upright: nothing to keep)."""
  if orientation is None or orientation == 1:
    return None
  return b"MM\x00*" + struct.pack(">IHHHIHHI", 8, 1, 0x0112, 3, 1, orientation, 0, 0)


def parse_segments(segments: list[tuple[int, bytes]]) -> Metadata:
  """Metadata from a file's (marker, payload) APPn/COM segments (ICC chunks reassembled in
  sequence order; the first EXIF and XMP segment; comments joined; the JFIF density)."""
  icc, exif, xmp, comments = {}, None, None, []
  for marker, payload in segments:
    if marker == 0xE1 and payload.startswith(_EXIF_HEADER) and exif is None:
      exif = payload[len(_EXIF_HEADER):]
    elif marker == 0xE1 and payload.startswith(_XMP_HEADER) and xmp is None:
      xmp = payload[len(_XMP_HEADER):]
    elif marker == 0xE2 and payload.startswith(_ICC_HEADER) and len(payload) > len(_ICC_HEADER) + 2:
      icc[payload[len(_ICC_HEADER)]] = payload[len(_ICC_HEADER) + 2:]
    elif marker == 0xFE:
      comments.append(payload)
  profile = b"".join(icc[k] for k in sorted(icc)) if icc else None
  return Metadata(icc_profile=profile, exif=exif, xmp=xmp,
                  comment=b"".join(comments) if comments else None,
                  density=jfif_density(segments))


def _mpf_index(payload: bytes):
  """(byte order, offset of the MP entries from the TIFF header, count) of an MPF APP2
  payload, or None when it holds no MP entry list."""
  tiff = payload[4:]
  if len(tiff) < 8 or tiff[:4] not in (b"II*\x00", b"MM\x00*"):
    return None
  order = "<" if tiff[:2] == b"II" else ">"
  ifd = struct.unpack(order + "I", tiff[4:8])[0]
  if ifd + 2 > len(tiff):
    return None
  for i in range(struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]):
    entry = ifd + 2 + 12 * i
    if entry + 12 > len(tiff):
      return None
    tag, _, count, value = struct.unpack(order + "HHII", tiff[entry:entry + 12])
    if tag == 0xB002 and count % 16 == 0 and value + count <= len(tiff):
      return order, value, count // 16
  return None


def with_trailing(image: bytes, original: bytes, original_end: int) -> bytes:
  """`image` (a new file of `original`'s picture, its segments copied) followed by the bytes
  `original` has after its EOI (at `original_end`: the other pictures of a multi-picture file,
  such as a phone's depth or gain map; a motion photo's video, whose offset counts from the
  end), with the MPF index (CIPA DC-007) pointing at the other pictures where they now lie:
  its entries' offsets count from the MPF segment's TIFF header, and the first picture's size
  is its own length."""
  trailing = original[original_end:]
  if not trailing:
    return image
  mpf = [(pos, p) for m, pos, p in header_segments(image) if m == 0xE2 and p[:4] == b"MPF\x00"]
  old = [(pos, p) for m, pos, p in header_segments(original)
         if m == 0xE2 and p[:4] == b"MPF\x00"]
  out = bytearray(image + trailing)
  if mpf and old and mpf[0][1] == old[0][1] and (index := _mpf_index(mpf[0][1])):
    order, at, count = index
    old_header, new_header = old[0][0] + 8, mpf[0][0] + 8   # FF E2, length, "MPF\0"
    shift = len(image) - original_end
    for i in range(count):
      entry = new_header + at + 16 * i
      size, offset = struct.unpack(order + "II", out[entry + 4:entry + 12])
      if i == 0:
        size = len(image)
      elif offset and old_header + offset >= original_end:
        offset = old_header + offset + shift - new_header
      out[entry + 4:entry + 12] = struct.pack(order + "II", size, offset)
  return bytes(out)
