"""The opt-out from the app's response compression (``CompressionConfig.exclude_opt_key``).

A route whose answer is compressed already (a zip archive, a pre-gzipped asset) sets
``opt={SKIP_COMPRESSION: True}``: compressing it again costs CPU and saves nothing.
"""

SKIP_COMPRESSION = "skip_compression"
