"""``python -m include.modelops.cli``: the commands behind the Makefile targets."""

import sys

from include.modelops.cli import main

sys.exit(main())
