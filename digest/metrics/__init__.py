"""Prometheus metrics for `digest run` and `digest serve` (`metrics.listen`): the counters of
digest.core.counters, the state read at scrape time (gauges), and the listener serving them on
a port of its own, never the public app's.
"""
