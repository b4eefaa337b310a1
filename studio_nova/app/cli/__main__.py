"""`python -m studio_nova.app.cli`: the same as the `studio-nova` console script."""

import sys

from studio_nova.app.cli import main

sys.exit(main())
