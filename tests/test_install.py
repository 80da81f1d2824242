"""What the installed package looks like from a user's project: names, commands, image inputs."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from PIL import Image

from djpeg import cli, images, samples
from conftest import pillow_decode

LIBJPEG_TOOLS = ("cjpeg", "djpeg", "jpegtran", "rdjpgcom", "wrjpgcom", "tjbench", "cjpegli",
                 "djpegli")


def test_a_users_models_package_and_train_module_do_not_collide(tmp_path):
  # A typical ML project: its own `models` package and `train.py`, run from its folder.
  (tmp_path / "models").mkdir()
  (tmp_path / "models" / "__init__.py").write_text("WHOSE = 'user'\n")
  (tmp_path / "train.py").write_text("WHOSE = 'user'\n")
  code = textwrap.dedent("""
      import numpy as np
      import djpeg
      from djpeg.encoder import compress
      from djpeg.models.qtable_net import predict_tables
      image = djpeg.samples.load("houses")
      result = compress(image, bpp=1.0, saliency="auto")
      tables = predict_tables(image, bpp=1.0)
      assert result.saliency is not None and tables.shape == (3, 8, 8)
      import models, train
      assert models.WHOSE == "user" and train.WHOSE == "user", (models.__file__, train.__file__)
      print("ok")
      """)
  proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().endswith("ok")


def test_no_installed_command_shadows_a_jpeg_tool():
  from importlib.metadata import entry_points
  names = {ep.name for ep in entry_points(group="console_scripts")
           if ep.value.startswith("djpeg.")}
  assert {"djpeg-cli", "djpeg-train"} <= names
  assert not names & set(LIBJPEG_TOOLS)


def test_python_dash_m_djpeg_runs_the_command():
  proc = subprocess.run([sys.executable, "-m", "djpeg", "encode", "--help"], capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0 and "djpeg-cli encode" in proc.stdout


# ------------------------------------------------------------------------ image inputs

def png16(values: np.ndarray) -> bytes:
  """A 16-bit PNG (gray `(H, W)` or RGB `(H, W, 3)`), written by hand: Pillow writes none."""
  h, w = values.shape[:2]
  colour = values.ndim == 3
  rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
  header = struct.pack(">IIBBBBB", w, h, 16, 2 if colour else 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
          + chunk(b"IEND", b""))


def encode_file(tmp_path, source, *extra):
  out = tmp_path / "out.jpg"
  code = cli.main(["encode", str(source), str(out), "--libjpeg", "--quality", "95",
                   "--subsampling", "4:4:4", "--quiet", *extra])
  return code, out


def test_16_bit_gray_png_is_rounded_not_clipped(tmp_path):
  rng = np.random.default_rng(0)
  values = rng.integers(0, 65536, (24, 40)).astype(np.uint16)
  values[0, :4] = [0, 128, 32896, 65535]            # 0, 0.5, 128.5 and 255 in 8-bit units
  source = tmp_path / "gray16.png"
  source.write_bytes(png16(values))
  expected = np.floor(values / 65535 * 255 + 0.5).astype(np.uint8)
  np.testing.assert_array_equal(images.load_image(source)[..., 0], expected)
  code, out = encode_file(tmp_path, source)
  assert code == 0
  decoded = pillow_decode(out.read_bytes())[..., 0].astype(int)
  # A clip to 255 (what `convert("L")` does to I;16) would put most pixels at 255.
  assert np.mean(decoded >= 250) < 0.1
  assert np.abs(decoded - expected).mean() < 2.0


def test_16_bit_colour_png_is_refused_with_the_reason(tmp_path):
  source = tmp_path / "rgb16.png"
  source.write_bytes(png16(np.full((8, 8, 3), 40000, np.uint16)))
  with pytest.raises(ValueError, match="16-bit colour"):
    images.load_image(source)
  with pytest.raises(SystemExit, match="16-bit colour"):
    encode_file(tmp_path, source)
  assert not (tmp_path / "out.jpg").exists()


def test_rgba_png_needs_a_matte_unless_opaque(tmp_path):
  pixels = samples.load("limes", uint8=True)
  alpha = np.full(pixels.shape[:2], 255, np.uint8)
  opaque = tmp_path / "opaque.png"
  Image.fromarray(np.dstack([pixels, alpha])).save(opaque)
  np.testing.assert_array_equal(images.load_image(opaque), pixels)    # nothing to lose
  alpha[:40] = 0
  alpha[40:60] = 128
  clear = tmp_path / "clear.png"
  Image.fromarray(np.dstack([pixels, alpha])).save(clear)
  with pytest.raises(SystemExit, match="transparency"):
    encode_file(tmp_path, clear)
  assert not (tmp_path / "out.jpg").exists()
  flat = images.load_image(clear, matte="white")
  assert np.all(flat[:40] == 255)                                      # fully transparent: white
  half = (pixels[40:60].astype(int) * 128 + 255 * 127 + 127) // 255
  assert np.abs(flat[40:60].astype(int) - half).max() <= 1
  np.testing.assert_array_equal(flat[60:], pixels[60:])
  code, out = encode_file(tmp_path, clear, "--matte", "white")
  assert code == 0
  assert np.abs(pillow_decode(out.read_bytes())[:40].astype(int) - 255).max() <= 3


def test_palette_gray_alpha_and_cmyk_inputs(tmp_path):
  pixels = samples.load("houses", uint8=True)
  palette = Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
  path = tmp_path / "p.png"
  palette.save(path)
  np.testing.assert_array_equal(images.load_image(path), np.asarray(palette.convert("RGB")))
  gray = samples.load("bear_gray", uint8=True)[..., 0]
  la = tmp_path / "la.png"
  Image.fromarray(np.dstack([gray, np.full_like(gray, 255)]), "LA").save(la)
  np.testing.assert_array_equal(images.load_image(la)[..., 0], gray)
  cmyk = tmp_path / "c.tif"
  Image.fromarray(pixels).convert("CMYK").save(cmyk)
  with pytest.raises(ValueError, match="CMYK"):
    images.load_image(cmyk)
  with pytest.raises(ValueError, match="no such file"):
    images.load_image(tmp_path / "missing.png")
  (tmp_path / "bad.png").write_bytes(b"not an image")
  with pytest.raises(ValueError, match="cannot be read"):
    images.load_image(tmp_path / "bad.png")
