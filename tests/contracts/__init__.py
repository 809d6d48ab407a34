"""Contract suites: one abstract test case per port, subclassed per implementation.

As in the eventsourcing library: `class XContract` says what every implementation of port X
must do, and it is subclassed once for the in-memory implementation (core/memory.py) and
once for the Linux one (marked `kernel`: root, a temporary root directory, nothing left on
the host). Each subclass provides the implementation and the few ways to look at it the
contract can't ask the port itself (a layer's files, whether a cgroup is frozen).
"""
