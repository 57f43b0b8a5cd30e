import sys

from taulib.cli import main

sys.exit(main())
