"""The recommender's catalog: items and user profiles."""

from __future__ import annotations

from collections.abc import Sequence

from abtest.domain.recommender_config import CatalogItem
from abtest.storage.database import Connection, Database


class CatalogRepository:
    """Items the built-in recommender ranks, and the user profiles it personalises with."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def catalog(self) -> list[CatalogItem]:
        """Every item, in id order."""
        return self._db.run(
            lambda conn: [
                CatalogItem.model_validate(row)
                for row in conn.execute("SELECT id, title, embedding, popularity FROM items ORDER BY id")
            ],
            transaction=False,
        )

    def replace_catalog(
        self,
        items: Sequence[tuple[str, str, Sequence[float], float]],
        profiles: Sequence[tuple[str, Sequence[float]]],
    ) -> None:
        """Replace the catalog and the user profiles in one transaction (COPY for speed).

        Items are (id, title, embedding, popularity), profiles (user_id, embedding).
        """

        def work(conn: Connection) -> None:
            conn.execute("TRUNCATE items, user_profiles")
            with conn.cursor().copy("COPY items (id, title, embedding, popularity) FROM STDIN") as copy:
                for item_id, title, embedding, popularity in items:
                    copy.write_row((item_id, title, list(embedding), popularity))
            with conn.cursor().copy("COPY user_profiles (user_id, embedding) FROM STDIN") as copy:
                for user_id, embedding in profiles:
                    copy.write_row((user_id, list(embedding)))

        self._db.run(work)

    def count_items(self) -> int:
        """How many items the catalog holds."""
        row = self._db.run(
            lambda conn: conn.execute("SELECT count(*) AS n FROM items").fetchone(), transaction=False
        )
        return int(row["n"]) if row else 0
