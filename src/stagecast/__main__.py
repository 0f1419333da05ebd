"""Run the CLI as ``python -m stagecast``."""

from stagecast.cli import main

main()
