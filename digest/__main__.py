"""Allow `python -m digest`."""

from digest.entry import main

main()
