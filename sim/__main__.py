"""`python -m genpool.sim ...`: run the Gemini API simulator."""

from __future__ import annotations

import sys

from genpool.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
