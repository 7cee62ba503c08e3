"""Training data, the synthetic corpus and the MIGR recipes (``migr_rt.training``)."""
