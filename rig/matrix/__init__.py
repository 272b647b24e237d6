"""`rig matrix`: one series across kernels, GPU models, pressure, plans and profiles.

spec.py reads and checks a matrix file, cells.py expands it into cells, runner.py runs
the cells on this machine (each through rig.pipeline, as `rig run` does), report.py
merges finished cells into the matrix reports, and gitlab.py hands the same matrix to
GitLab CI as a pipeline.
"""
