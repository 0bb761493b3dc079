"""Engines: generation (receiver) and inversion (sender), as iterators of progress records."""
