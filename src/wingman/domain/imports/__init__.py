"""Chat transcript imports: upload, parse in the ``heavy`` queue, store all or nothing."""
