"""DVC stage 'search': parse arguments, call nascore (all logic lives in packages/nascore)."""
import sys

from nascore.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
