"""Small helpers with no place of their own: rate-limited logging, the progress bar, state-dict
comparison, and the stage timings, histograms and Prometheus text behind ``/status`` and ``/metrics``.

May import: the standard library, numpy and the top-level base modules (``errors``, ``protocol``).
Nothing else in the package; everything may import this.
"""
