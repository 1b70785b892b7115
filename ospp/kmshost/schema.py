"""The tables of a KMS host's store (``kms.db``) and the migrations that bring an older
store up to date. ``SCHEMA[i]`` moves schema ``i`` to ``i + 1``; :class:`ospp.core.db.Database`
runs each script's statements (separated by ';', none inside a statement) in one transaction.
"""

from __future__ import annotations

from ospp.kmshost.packs import MIGRATION as PACKS_MIGRATION

# The canonical form of a stored CMID, in SQL, as ospp.protocol.cmid.canonical_cmid writes
# a GUID: braces dropped, lower case. (Rows that are no GUID, which hosts no longer store,
# are only unbraced and lower-cased; no request can refresh them, so they age out.)
_CANONICAL = (
    "lower(CASE WHEN length(cmid) = 38 AND substr(cmid, 1, 1) = '{' "
    "AND substr(cmid, 38, 1) = '}' THEN substr(cmid, 2, 36) ELSE cmid END)"
)

# Hosts once stored a CMID as the client spelled it (lower-cased), so one machine that wrote
# its ID in braces and without had an entry per spelling, and was counted once per spelling.
# Requests are now counted by the canonical form: each machine's entries merge into one,
# which keeps the earliest first sighting, the latest last sighting (with the product,
# name and status reported then) and the sum of the requests.
CANONICAL_CMIDS = f"""
    INSERT INTO clients
        (app, cmid, sku_id, workstation, first_seen, last_seen, requests, status)
        SELECT app, {_CANONICAL}, sku_id, workstation, first_seen, last_seen, requests, status
        FROM clients WHERE cmid <> {_CANONICAL}
        ORDER BY last_seen
    ON CONFLICT (app, cmid) DO UPDATE SET
        first_seen = min(first_seen, excluded.first_seen),
        last_seen = max(last_seen, excluded.last_seen),
        requests = requests + excluded.requests,
        sku_id = iif(excluded.last_seen >= last_seen, excluded.sku_id, sku_id),
        workstation = iif(excluded.last_seen >= last_seen, excluded.workstation, workstation),
        status = iif(excluded.last_seen >= last_seen, excluded.status, status);
    DELETE FROM clients WHERE cmid <> {_CANONICAL};
    INSERT OR REPLACE INTO stats SELECT 'clients', count(*) FROM clients;
"""

SCHEMA = [
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE clients (
        app TEXT NOT NULL,
        cmid TEXT NOT NULL,
        sku_id TEXT NOT NULL,
        workstation TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        PRIMARY KEY (app, cmid)
    ) WITHOUT ROWID;
    CREATE INDEX clients_recent ON clients (app, last_seen);
    CREATE TABLE stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
    # The licence status each client last reported (for the status page's filter).
    """
    ALTER TABLE clients ADD COLUMN status TEXT NOT NULL DEFAULT '';
    """,
    # How many clients are stored, kept as a statistic: counting a million rows takes longer
    # than everything else 'kms status' does.
    """
    INSERT OR REPLACE INTO stats SELECT 'clients', count(*) FROM clients;
    """,
    # One licence pack per application group (the single host key moves into it).
    PACKS_MIGRATION,
    # One entry per machine, however it spelled its CMID.
    CANONICAL_CMIDS,
]
