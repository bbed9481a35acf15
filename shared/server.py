"""`python -m shared.server` still works: the local server lives in shared/local/server.py."""

import sys

from shared.local.server import main

if __name__ == "__main__":
    sys.exit(main())
