"""Beyond one process: a batch's rows on a Ray cluster (babygan/distributed/ray_batch.py).

Ray is an optional extra (``pip install 'babygan[ray]'``), imported only when a batch runs on it.
"""
