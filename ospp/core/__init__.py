"""What every role shares: errors and licensing codes, time, paths, SQLite, the catalog.

Nothing here knows about keys, signatures or any role; ``core`` imports only the standard
library, click-free, and platformdirs on demand.
"""
