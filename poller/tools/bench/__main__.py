"""``python -m poller.tools.bench``: the benchmark, and the children it starts."""

import sys

from poller.tools.bench import main

sys.exit(main())
