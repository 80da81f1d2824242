import sys

from djpeg.cli import main

sys.exit(main())
