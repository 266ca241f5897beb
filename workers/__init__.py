"""RQ jobs and the pure page stages they call."""
