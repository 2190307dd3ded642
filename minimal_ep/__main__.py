"""``python -m minimal_ep <command>``: the same as the ``minimal-ep`` command."""
import sys

from .run.cli import main

sys.exit(main())
