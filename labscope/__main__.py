"""``python -m labscope``: same as the ``labscope`` console script."""

import sys

from labscope.cli import main

sys.exit(main())
