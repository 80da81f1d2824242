"""Property tests: any valid coefficients make a file that strict libjpeg-turbo decodes and that
jpeglib and our reader read back exactly."""

from __future__ import annotations

import numpy as np
import simplejpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import djpeg
from exact_util import assert_same_coefficients, jpeglib_coefficients, random_coefficients

FACTORS = {
    "4:4:4": ((1, 1), (1, 1), (1, 1)),
    "4:2:2": ((2, 1), (1, 1), (1, 1)),
    "4:2:0": ((2, 2), (1, 1), (1, 1)),
    "4:4:0": ((1, 2), (1, 1), (1, 1)),
    "4:1:1": ((4, 1), (1, 1), (1, 1)),
    "gray": ((1, 1),),
}


@st.composite
def cases(draw):
  return dict(
      seed=draw(st.integers(0, 2**32 - 1)),
      height=draw(st.integers(1, 300)),
      width=draw(st.integers(1, 300)),
      sampling=draw(st.sampled_from(sorted(FACTORS))),
      density=draw(st.sampled_from([0.0, 0.02, 0.15, 0.6])),
      progressive=draw(st.booleans()),
      optimize=draw(st.booleans()),
      restart=draw(st.sampled_from([None, None, 1, 2, 7, 50])),
  )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_written_files_decode_strictly_and_read_back_exactly(case):
  rng = np.random.default_rng(case["seed"])
  coefficients = random_coefficients(rng, case["height"], case["width"], FACTORS[case["sampling"]],
                                     density=case["density"])
  data = djpeg.dumps(coefficients, optimize=case["optimize"], progressive=case["progressive"],
                     restart_interval=case["restart"])
  gray = case["sampling"] == "gray"
  pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if gray else "RGB", strict=True)
  assert pixels.shape[:2] == (case["height"], case["width"])
  assert_same_coefficients(jpeglib_coefficients(data), coefficients)
  assert_same_coefficients(djpeg.load_coefficients(data), coefficients)
