"""`python -m shared.cli` still works: the command line lives in shared/local/cli.py."""

import sys

from shared.local.cli import main

if __name__ == "__main__":
    sys.exit(main())
