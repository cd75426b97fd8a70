"""Retention: old rows deleted daily, in small batches, per the ``retention`` global config."""
