"""Allow `python -m digest`."""

from digest.cli import main

main(prog_name="digest")
