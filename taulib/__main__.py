import sys

from taulib.cli import main

if __name__ == "__main__":  # not when a worker process (Dask, multiprocessing) imports it
    sys.exit(main())
