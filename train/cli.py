"""The `djpeg-train` command: one subcommand per training task.

  djpeg-train tables family|net ...   learned quantization tables (see train.tables)
  djpeg-train consistency ...         JPEG-aware feature-consistency training (see train.consistency)
  djpeg-train saliency ...            the saliency network for regions of interest (see train.saliency)
  djpeg-train task-tables family|net|block|alternate ...
                                      quantization tables (and trellis weights) learned for a
                                      classifier's accuracy (see train.task_tables)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

TASKS = {"tables": "djpeg.train.tables", "consistency": "djpeg.train.consistency",
         "saliency": "djpeg.train.saliency", "task-tables": "djpeg.train.task_tables"}


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] in ("-h", "--help"):
    print(__doc__.strip())
    return 0
  if not argv or argv[0] not in TASKS:
    print(f"usage: djpeg-train {{{','.join(TASKS)}}} [options]; got {argv[:1] or 'nothing'}.",
          file=sys.stderr)
    return 2
  import importlib
  return importlib.import_module(TASKS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
  sys.exit(main())
