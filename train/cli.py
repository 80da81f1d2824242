"""The `djpeg-train` command: training runs of the project's models.

  djpeg-train tables family|net ...     learned quantization tables (train/tables.py)
  djpeg-train consistency ...           JPEG-aware feature-consistency training (train/consistency.py)
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  commands = {"tables": "train.tables", "consistency": "train.consistency"}
  if not argv or argv[0] not in commands:
    print("usage: djpeg-train {tables,consistency} ...  (djpeg-train COMMAND --help for more)",
          file=sys.stderr)
    return 2
  import importlib
  return importlib.import_module(commands[argv[0]]).main(argv[1:])


if __name__ == "__main__":
  sys.exit(main())
