"""``python -m cvmlaunch``."""

from cvmlaunch.cli import main

main()
