import sys

from bench import export, run, scale

# `python -m bench scale ...`: one large batch (bench/scale.py); otherwise the station against ocrmypdf.
if sys.argv[1:2] == ["scale"]:
    sys.exit(scale.main(sys.argv[2:]))
# `python -m bench export ...`: the offline export's search over 20,000 pages (bench/export.py).
if sys.argv[1:2] == ["export"]:
    sys.exit(export.main(sys.argv[2:]))
sys.exit(run.main())
