"""tap-hdb-resale: a Singer tap for Singapore HDB resale flat prices (data.gov.sg).

Importing the package imports nothing else, so ``tap_hdb_resale.api`` can be used without
singer-sdk (``make data`` does).
"""
