"""`python -m wfed`: the daemon."""

import sys

from wfed.daemon.main import main

sys.exit(main())
