"""``python -m ferlab``: the same CLI as the ``ferlab`` command."""

import sys

from ferlab.cli import main

sys.exit(main())
