"""Metadata kept from inputs and written by the API and the CLI, read back by Pillow and jpeglib."""

from __future__ import annotations

import io
import subprocess
import shutil

import numpy as np
import pytest
import simplejpeg
from PIL import Image, PngImagePlugin

import djpeg
from djpeg import cli, samples
from djpeg.exact import Metadata
from conftest import read_dct

XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-'
       b'rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" '
       b'dc:title="djpeg test"/></rdf:RDF></x:xmpmeta>')


def big_icc() -> bytes:
  """A real sRGB profile padded past 64 KB (its tag table is left as it is)."""
  from PIL import ImageCms
  profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
  return profile + bytes(range(256)) * 300        # 76,800 extra bytes: two APP2 segments


def exif_bytes() -> bytes:
  exif = Image.Exif()
  exif[0x0112] = 6                                 # orientation: rotate 90 CW to display
  exif[0x010F] = "djpeg camera"
  exif[0x0132] = "2026:12:04 12:00:00"
  return exif.tobytes()


def check(data: bytes, pixels: np.ndarray, icc: bytes) -> None:
  image = Image.open(io.BytesIO(data))
  assert image.info.get("icc_profile") == icc
  exif = image.getexif()
  assert exif[0x0112] == 6 and exif[0x010F] == "djpeg camera"
  assert image.info.get("xmp") == XMP
  assert image.info.get("comment") == b"a comment"
  assert image.size == (pixels.shape[1], pixels.shape[0])     # pixels not rotated
  simplejpeg.decode_jpeg(data, strict=True)


def test_api_writes_pillows_keywords():
  pixels = samples.load("houses", uint8=True)
  icc = big_icc()
  data = djpeg.dumps(pixels, quality=80, icc_profile=icc, exif=exif_bytes(), xmp=XMP.decode(),
                     comment="a comment", progressive=True)
  check(data, pixels, icc)
  # The image data is untouched: the same coefficients as without metadata.
  plain = djpeg.dumps(pixels, quality=80, progressive=True)
  for ours, theirs in zip(read_dct(data)[0], read_dct(plain)[0]):
    np.testing.assert_array_equal(ours, theirs)
  # Pillow's integer subsampling and a PIL.Image.Exif are accepted as Pillow takes them.
  same = djpeg.dumps(pixels, quality=80, subsampling=2, exif=Image.open(io.BytesIO(data)).getexif())
  assert Image.open(io.BytesIO(same)).getexif()[0x0112] == 6
  assert djpeg.dumps(pixels, quality=80, subsampling=0) == djpeg.dumps(pixels, quality=80,
                                                                       subsampling="4:4:4")


def test_bad_metadata_is_refused():
  pixels = samples.load("limes", uint8=True)
  with pytest.raises(ValueError, match="EXIF of"):
    djpeg.dumps(pixels, exif=b"II*\x00" + bytes(70000))
  with pytest.raises(ValueError, match="XMP packet"):
    djpeg.dumps(pixels, xmp=b"x" * 70000)
  with pytest.raises(ValueError, match="not both"):
    djpeg.dumps(pixels, metadata=Metadata(comment=b"a"), comment="b")
  with pytest.raises(ValueError, match="subsampling"):
    djpeg.dumps(pixels, subsampling=3)


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_cli_keeps_metadata_unless_stripped(tmp_path, kind):
  pixels = samples.load("castle", uint8=True)
  icc = big_icc()
  source = tmp_path / f"in.{'jpg' if kind == 'jpeg' else 'png'}"
  if kind == "jpeg":
    Image.fromarray(pixels).save(source, quality=95, icc_profile=icc, exif=exif_bytes(),
                                 xmp=XMP, comment=b"a comment", dpi=(300, 300))
  else:
    text = PngImagePlugin.PngInfo()
    text.add_itxt("XML:com.adobe.xmp", XMP.decode())
    text.add_text("Comment", "a comment")
    Image.fromarray(pixels).save(source, icc_profile=icc, exif=exif_bytes(), pnginfo=text,
                                 dpi=(300, 300))
  kept = tmp_path / "kept.jpg"
  assert cli.main(["encode", str(source), str(kept), "--quiet"]) == 0
  check(kept.read_bytes(), pixels, icc)
  assert Image.open(kept).info["dpi"] == (300, 300)           # the print resolution too
  for mode in ([], ["--libjpeg"]) + ((["--lossless"], ["--pixels"]) if kind == "jpeg" else ()):
    stripped = tmp_path / f"stripped{''.join(mode)}.jpg"
    assert cli.main(["encode", str(source), str(stripped), "--strip", "--quiet", *mode]) == 0
    bare = Image.open(stripped)
    assert not any(k in bare.info for k in ("icc_profile", "xmp", "comment")), mode
    assert bare.info["dpi"] == (300, 300)        # print resolution stays (jpegtran -copy none)
    # and the orientation, alone (camera and date gone): a portrait photo had lost it and
    # displayed sideways, its pixels unrotated.
    assert dict(bare.getexif()) == {0x0112: 6}, mode
  if shutil.which("djpeg"):      # libjpeg-turbo's own strict decoder reads it too
    subprocess.run(["djpeg", "-strict", "-outfile", str(tmp_path / "o.ppm"), str(kept)],
                   check=True)


def test_png_text_left_out_is_named(tmp_path, capsys):
  # PNG text a JPEG has no segment for (Copyright, Description) had vanished without a word;
  # the comment and the XMP packet are carried and not named.
  text = PngImagePlugin.PngInfo()
  text.add_text("Copyright", "(c) djpeg")
  text.add_itxt("Description", "a test")
  text.add_text("Comment", "a comment")
  text.add_itxt("XML:com.adobe.xmp", XMP.decode())
  source = tmp_path / "in.png"
  Image.fromarray(samples.load("limes", uint8=True)).save(source, pnginfo=text)
  assert cli.main(["encode", str(source), str(tmp_path / "out.jpg"), "--libjpeg", "--quiet",
                   "--no-cache"]) == 0
  notes = capsys.readouterr().err
  assert "PNG text not carried to the JPEG: Copyright, Description (" in notes, notes
  out = Image.open(tmp_path / "out.jpg")
  assert out.info["comment"] == b"a comment" and "xmp" in out.info


@pytest.mark.parametrize("kind", ["jpeg", "png"])
@pytest.mark.parametrize("dpi", [None, (300, 300)])
def test_cli_compact_keeps_the_image_and_its_metadata_in_fewer_bytes(tmp_path, kind, dpi):
  """`--compact`: the pixels and metadata of the default file, fewer header bytes, and no JFIF
  APP0 unless it carries the input's print resolution."""
  pixels = samples.load("castle", uint8=True)
  source = tmp_path / f"in.{'jpg' if kind == 'jpeg' else 'png'}"
  extra = {"dpi": dpi} if dpi else {}
  Image.fromarray(pixels).save(source, exif=exif_bytes(), **extra,
                               **({"quality": 95} if kind == "jpeg" else {}))
  plain, compact = tmp_path / "plain.jpg", tmp_path / "compact.jpg"
  assert cli.main(["encode", str(source), str(plain), "--quiet"]) == 0
  assert cli.main(["encode", str(source), str(compact), "--compact", "--quiet"]) == 0
  assert len(compact.read_bytes()) < len(plain.read_bytes()) - (0 if dpi else 18)
  image = Image.open(compact)
  np.testing.assert_array_equal(np.asarray(image), np.asarray(Image.open(plain)))
  assert image.getexif()[0x0112] == 6
  assert ("jfif" in image.info) == bool(dpi)
  if dpi:
    assert image.info["dpi"] == dpi
  simplejpeg.decode_jpeg(compact.read_bytes(), strict=True)
