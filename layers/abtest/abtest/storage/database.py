"""Database connection fit for Lambda.

One connection per container (per thread, so the local multi-threaded server behaves like many
containers), opened lazily on first use and reused across invocations. `autocommit=True` with explicit
transactions; `prepare_threshold=None` because RDS Proxy pins sessions that use prepared statements.
A connection found dropped (idle timeout, failover, proxy restart) is replaced and the unit of work
retried once. Credentials come from DATABASE_URL locally, and in AWS from a Secrets Manager secret or an
IAM auth token generated for RDS Proxy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from abtest.errors import InvalidInput, Unavailable
from abtest.observability import logger
from abtest.settings import Settings, get_settings

T = TypeVar("T")
Connection = psycopg.Connection[DictRow]

# Ping a connection before use when it has been idle this long.
IDLE_CHECK_SECONDS = 30.0


def connection_params(settings: Settings, boto_session: Any = None) -> dict[str, Any]:
    """Keyword arguments for psycopg.connect, resolving credentials for the configured mode."""
    common: dict[str, Any] = {"connect_timeout": settings.db_connect_timeout}
    if settings.database_url:
        return {"conninfo": settings.database_url, **common}
    if not settings.db_host and not settings.db_secret_arn:
        raise Unavailable(
            "no database configured: set DATABASE_URL, or DB_HOST with DB_SECRET_ARN or DB_IAM_AUTH"
        )
    params: dict[str, Any] = {"dbname": settings.db_name, "port": settings.db_port, **common}
    if settings.db_sslmode:
        params["sslmode"] = settings.db_sslmode
    if settings.db_secret_arn:
        secret = _read_secret(settings, boto_session)
        params.update(
            user=secret["username"],
            password=secret["password"],
            host=secret.get("host", settings.db_host),
            port=int(secret.get("port", settings.db_port)),
            dbname=secret.get("dbname", settings.db_name),
        )
        if settings.db_host:  # e.g. the RDS Proxy endpoint rather than the cluster in the secret
            params["host"] = settings.db_host
        return params
    if settings.db_iam_auth:
        if not settings.db_user:
            raise Unavailable("DB_IAM_AUTH needs DB_USER")
        client = _boto_session(boto_session).client("rds", region_name=settings.aws_region)
        token = client.generate_db_auth_token(
            DBHostname=settings.db_host,
            Port=settings.db_port,
            DBUsername=settings.db_user,
            Region=settings.aws_region,
        )
        # IAM tokens are only accepted over TLS.
        params.update(host=settings.db_host, user=settings.db_user, password=token)
        params.setdefault("sslmode", "require")
        return params
    params.update(host=settings.db_host, user=settings.db_user)
    return params


def _boto_session(session: Any) -> Any:
    if session is not None:
        return session
    import boto3  # imported lazily: local runs and DATABASE_URL deployments never pay for it

    return boto3.session.Session()


def _read_secret(settings: Settings, boto_session: Any) -> dict[str, Any]:
    client = _boto_session(boto_session).client("secretsmanager", region_name=settings.aws_region)
    value = client.get_secret_value(SecretId=settings.db_secret_arn)
    secret: dict[str, Any] = json.loads(value["SecretString"])
    if "username" not in secret or "password" not in secret:
        raise Unavailable("the database secret must hold 'username' and 'password'")
    return secret


class Database:
    """Lazily connected, self-healing access to PostgreSQL."""

    def __init__(
        self,
        params: Callable[[], dict[str, Any]],
        *,
        statement_timeout_ms: int = 5000,
    ) -> None:
        self._params = params
        self._statement_timeout_ms = statement_timeout_ms
        self._local = threading.local()

    def _open(self) -> Connection:
        try:
            params = self._params()
        except Unavailable:
            raise
        except Exception as exc:  # e.g. Secrets Manager unreachable or access denied
            logger.warning("database credentials unavailable", extra={"error": str(exc)})
            raise Unavailable("the database credentials could not be read") from exc
        try:
            conn = psycopg.connect(
                **params,
                autocommit=True,
                prepare_threshold=None,
                row_factory=dict_row,
            )
        except psycopg.Error as exc:
            logger.warning("database connection failed", extra={"error": str(exc)})
            raise Unavailable("the database is unavailable; try again shortly") from exc
        self._local.conn = conn
        return conn

    def connection(self) -> Connection:
        """The thread's open connection, reconnecting if the last one is known to be broken.

        A connection idle for longer than IDLE_CHECK_SECONDS (a frozen Lambda container, an RDS
        Proxy idle timeout) is pinged first, so that work which must not be retried (see `run`)
        rarely meets a dead connection.
        """
        conn: Connection | None = getattr(self._local, "conn", None)
        now = time.monotonic()
        idle = now - getattr(self._local, "used_at", now)
        if conn is not None and not (conn.closed or conn.broken) and idle > IDLE_CHECK_SECONDS:
            try:
                conn.execute("SELECT 1")
            except psycopg.Error:
                self.close()
                conn = None
        if conn is None or conn.closed or conn.broken:
            conn = self._open()
        self._local.used_at = now
        return conn

    def close(self) -> None:
        """Close this thread's connection (the next call reconnects)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def run(
        self,
        work: Callable[[Connection], T],
        *,
        transaction: bool = True,
        retry: bool = True,
        statement_timeout_ms: int | None = None,
    ) -> T:
        """Run `work` with a connection, in one transaction unless `transaction=False`.

        If the connection turns out to be dead, reconnect and run it once more (unless `retry=False`).
        A connection can drop after the server committed but before the answer arrived, so work that
        is not idempotent (an exposure insert, a conversion without event_id) passes `retry=False`
        and answers 503 instead of risking a second row. Connection failures and statement timeouts
        raise Unavailable; other driver errors propagate for the repository to translate.
        """
        timeout = statement_timeout_ms or self._statement_timeout_ms
        for attempt in (1, 2) if retry else (2,):
            conn = self.connection()
            try:
                if not transaction:
                    return work(conn)
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(timeout)))
                    return work(conn)
            except psycopg.DataError as exc:
                # Input the models let through but PostgreSQL cannot store, e.g. NUL inside free text
                # or JSON. The driver's message can quote the client's data: log only its SQLSTATE.
                logger.info("value refused by the database", extra={"sqlstate": exc.sqlstate})
                raise InvalidInput(
                    "a value in the request cannot be stored or computed by the database", field="body"
                ) from exc
            except psycopg.errors.QueryCanceled as exc:
                raise Unavailable("the database did not answer in time; nothing was changed") from exc
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if conn.broken or conn.closed:
                    self.close()
                    if attempt == 1:
                        logger.info("database connection dropped; reconnecting")
                        continue
                raise Unavailable("the database is unavailable; try again shortly") from exc
        raise AssertionError("unreachable")  # pragma: no cover


@lru_cache(maxsize=1)
def get_database() -> Database:
    """The container's Database, configured from the environment (connects on first use)."""
    settings = get_settings()
    return Database(
        lambda: connection_params(settings),
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
