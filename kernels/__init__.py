"""Triton kernels with their torch references (``migr_rt.kernels``)."""
