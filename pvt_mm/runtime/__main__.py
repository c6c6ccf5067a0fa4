"""``python -m pvt_mm.runtime FILE IMAGES... --out-dir DIR`` (:mod:`.cli`)."""
import sys

from .cli import cli

if __name__ == '__main__':
    code = cli()
    if code:  # 1: images skipped, 2: an error; 0 returns (runpy callers go on)
        sys.exit(code)
