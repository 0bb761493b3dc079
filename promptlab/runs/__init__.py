"""The lab's jobs over the engines: sweeps (and runs) as iterators of typed records. Qt-free."""
