"""``python -m coax_nb``: the ``coax-nb`` command, for environments without its script."""
import sys

from .cli import main

sys.exit(main())
