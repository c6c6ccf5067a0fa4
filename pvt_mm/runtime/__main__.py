"""``python -m pvt_mm.runtime FILE IMAGES... --out-dir DIR`` (:mod:`.cli`)."""
from .cli import main

if __name__ == '__main__':
    main()
