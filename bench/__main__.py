import sys

from bench import run, scale

# `python -m bench scale ...`: one large batch (bench/scale.py); otherwise the station against ocrmypdf.
if sys.argv[1:2] == ["scale"]:
    sys.exit(scale.main(sys.argv[2:]))
sys.exit(run.main())
