"""`python -m abtest.migrate`: apply the pending SQL migrations (DATABASE_URL or the DB_* settings)."""

from __future__ import annotations

import sys

from abtest.errors import Unavailable
from abtest.storage.schema import MigrationFailed, migrate_database


def main() -> int:
    """Entry point of `python -m abtest.migrate`."""
    try:
        applied = migrate_database()
    except (MigrationFailed, Unavailable) as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 1
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
