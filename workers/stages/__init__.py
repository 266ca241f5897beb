"""Pure page stages: arrays or paths in, results out; no RQ, no database."""
