"""DVC stage 'summary': every method side by side (all logic lives in packages/nascore)."""
import sys

from nascore.cli import main

if __name__ == "__main__":
    sys.exit(main(["summary", *sys.argv[1:]]))
