"""``python -m da`` (and ``torchrun ... -m da train``): the ``da`` command."""
import sys

from da.cli import main

sys.exit(main())
