"""The desktop lab: the only package that imports Qt (jobs, results, session and report do not)."""
