"""DVC stage 'variance': parse arguments, call nascore (all logic lives in packages/nascore)."""
import sys

from nascore.cli import main

if __name__ == "__main__":
    sys.exit(main(["variance", *sys.argv[1:]]))
