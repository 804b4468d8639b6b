"""Driver matrix, Python side: psycopg 3, asyncpg and SQLAlchemy as a restricted
account over TLS. Prints `ok <check>` per passing check and `FAIL <check>: <why>`
per failing one; exits 1 if any failed. Run by tests/driver_matrix.rs."""

import asyncio
import os
import ssl
import sys
import traceback

HOST = os.environ["MG_HOST"]
PORT = int(os.environ["MG_PORT"])
USER = os.environ["MG_USER"]
PASSWORD = os.environ["MG_PASSWORD"]
DB = os.environ["MG_DB"]
CA = os.environ["MG_CA"]

# What the clerk sees: columns in the table's order, citizen_id masked, phone absent.
COLUMNS = ["id", "full_name", "citizen_id", "province_code", "employer_id", "birth_date"]
MASKED_2 = "********4002"
RAW_2 = "001203004002"

failed = []


def check(name, fn):
    try:
        fn()
        print(f"ok {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failed.append(name)
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        print(f"FAIL {name}: {detail}", flush=True)


async def acheck(name, coro):
    try:
        await coro
        print(f"ok {name}", flush=True)
    except Exception as e:  # noqa: BLE001
        failed.append(name)
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        print(f"FAIL {name}: {detail}", flush=True)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_row(columns, row):
    expect(list(columns) == COLUMNS, f"columns {list(columns)}")
    values = dict(zip(columns, row))
    expect(values["citizen_id"] == MASKED_2, f"citizen_id {values['citizen_id']!r}")
    expect(RAW_2 not in repr(row) and "0999" not in repr(row), "a raw value came back")


# ----------------------------------------------------------------- psycopg
def psycopg_checks():
    import psycopg

    conninfo = (
        f"host={HOST} port={PORT} user={USER} password='{PASSWORD}' dbname={DB} "
        f"sslmode=verify-ca sslrootcert={CA}"
    )
    conn = psycopg.connect(conninfo, autocommit=True)
    sql = "SELECT * FROM person WHERE id = %s"

    def text():
        cur = conn.execute(sql, (2,))
        expect_row([c.name for c in cur.description], cur.fetchone())

    def binary():
        cur = conn.cursor(binary=True)
        cur.execute(sql, (2,))
        expect_row([c.name for c in cur.description], cur.fetchone())

    def pipeline():
        with conn.pipeline():
            a = conn.execute(sql, (2,))
            b = conn.execute("SELECT count(*) FROM person")
        expect_row([c.name for c in a.description], a.fetchone())
        expect(b.fetchone()[0] == 20, "row filter: 20 people in province 01")

    def server_side_cursor():
        with conn.transaction():
            cur = conn.cursor(name="people")
            cur.execute("SELECT * FROM person ORDER BY id")
            first = cur.fetchmany(3)
            rest = cur.fetchall()
            names = [c.name for c in cur.description]
            cur.close()
        expect(len(first) == 3 and len(first) + len(rest) == 20, "20 rows in steps")
        expect_row(names, first[0])

    def scrollable_cursor():
        # scroll() is MOVE [ABSOLUTE] n on a SCROLL cursor; rows fetched again count.
        with conn.transaction():
            cur = conn.cursor(name="scrolled", scrollable=True)
            cur.execute("SELECT id, citizen_id FROM person ORDER BY id")
            first = cur.fetchmany(5)
            cur.scroll(-3)
            again = cur.fetchone()
            cur.scroll(0, mode="absolute")
            head = cur.fetchone()
            cur.scroll(19, mode="absolute")
            last = cur.fetchone()
            cur.close()
        expect([r[0] for r in first] == [2, 4, 6, 8, 10], f"first five: {first}")
        expect(again[0] == 6 and head[0] == 2 and last[0] == 40, f"{again} {head} {last}")
        expect(all(r[1].startswith("********") for r in first + [again, head, last]), "masked")

    def denied_column():
        try:
            conn.execute("SELECT phone FROM person")
        except psycopg.errors.InsufficientPrivilege:
            return
        raise AssertionError("phone was readable")

    def session_settings():
        cur = conn.execute("SELECT current_setting('application_name')")
        cur.fetchone()
        conn.execute("SET search_path TO public")
        conn.execute("RESET ALL")
        conn.execute("DISCARD ALL")

    check("psycopg text", text)
    check("psycopg binary", binary)
    check("psycopg pipeline", pipeline)
    check("psycopg server-side cursor", server_side_cursor)
    check("psycopg scrollable server-side cursor", scrollable_cursor)
    check("psycopg denied column refused", denied_column)
    check("psycopg session settings", session_settings)
    conn.close()


# ----------------------------------------------------------------- asyncpg
async def asyncpg_checks():
    import asyncpg

    ctx = ssl.create_default_context(cafile=CA)
    ctx.check_hostname = False
    kwargs = dict(host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB, ssl=ctx)
    conn = None

    async def connect():
        nonlocal conn
        conn = await asyncpg.connect(**kwargs)

    await acheck("asyncpg connect", connect())
    if conn is None:
        return

    async def prepared_cache():
        for _ in range(3):
            row = await conn.fetchrow("SELECT * FROM person WHERE id = $1", 2)
            expect_row(list(row.keys()), list(row.values()))

    async def pool():
        p = await asyncpg.create_pool(min_size=1, max_size=1, **kwargs)
        for _ in range(3):
            async with p.acquire() as c:
                row = await c.fetchrow("SELECT * FROM person WHERE id = $1", 2)
                expect_row(list(row.keys()), list(row.values()))
        await p.close()

    async def cursor():
        async with conn.transaction():
            rows = [r async for r in conn.cursor("SELECT * FROM person ORDER BY id", prefetch=4)]
        expect(len(rows) == 20, f"{len(rows)} rows")
        expect_row(list(rows[0].keys()), list(rows[0].values()))

    async def copy_out():
        chunks = []

        async def sink(data):
            chunks.append(bytes(data))

        await conn.copy_from_query(
            "SELECT * FROM person ORDER BY id", output=sink, format="csv", header=True
        )
        text = b"".join(chunks).decode()
        lines = text.splitlines()
        expect(lines[0] == ",".join(COLUMNS), f"header {lines[0]!r}")
        expect(len(lines) == 21, f"{len(lines) - 1} rows")
        expect("********4002" in text and RAW_2 not in text and "0999" not in text, "masked")
        binary = []

        async def binary_sink(data):
            binary.append(bytes(data))

        await conn.copy_from_table("person", output=binary_sink, format="binary")
        expect(b"".join(binary).startswith(b"PGCOPY\n"), "binary COPY")

    async def copy_out_refused():
        other = await asyncpg.connect(**{**kwargs, "user": os.environ["MG_USER2"]})
        try:
            await other.copy_from_query("SELECT id FROM person", output=lambda b: None)
        except asyncpg.exceptions.InsufficientPrivilegeError:
            return
        finally:
            await other.close()
        raise AssertionError("COPY TO without the export grant was allowed")

    await acheck("asyncpg prepared-statement cache", prepared_cache())
    await acheck("asyncpg Pool acquire/release", pool())
    await acheck("asyncpg cursor", cursor())
    await acheck("asyncpg COPY out (CSV and binary) with export", copy_out())
    await acheck("asyncpg COPY out refused without export", copy_out_refused())
    await conn.close()


# ----------------------------------------------------------------- SQLAlchemy
def sqlalchemy_checks():
    import sqlalchemy
    from sqlalchemy.engine import URL

    url = URL.create(
        "postgresql+psycopg", username=USER, password=PASSWORD, host=HOST, port=PORT,
        database=DB, query={"sslmode": "verify-ca", "sslrootcert": CA},
    )
    engine = sqlalchemy.create_engine(url)
    inspector = None

    def connect():
        nonlocal inspector
        inspector = sqlalchemy.inspect(engine)

    check("SQLAlchemy connect", connect)
    if inspector is None:
        return

    def tables():
        names = inspector.get_table_names()
        expect(sorted(names) == ["employer", "person"], f"tables {names}")

    def columns():
        names = [c["name"] for c in inspector.get_columns("person")]
        expect(names == COLUMNS, f"columns {names}")

    def pk():
        pk = inspector.get_pk_constraint("person")
        expect(pk["constrained_columns"] == ["id"], f"{pk}")

    def indexes():
        names = sorted(i["name"] for i in inspector.get_indexes("person"))
        expect(names == ["person_citizen_key"], f"indexes {names}")

    def foreign_keys():
        fks = inspector.get_foreign_keys("person")
        expect([f["referred_table"] for f in fks] == ["employer"], f"{fks}")

    def reflect_and_query():
        meta = sqlalchemy.MetaData()
        person = sqlalchemy.Table("person", meta, autoload_with=engine)
        expect([c.name for c in person.columns] == COLUMNS, "reflected columns")
        with engine.connect() as c:
            row = c.execute(sqlalchemy.select(person).where(person.c.id == 2)).one()
        expect_row(COLUMNS, list(row))

    check("SQLAlchemy get_table_names", tables)
    check("SQLAlchemy get_columns", columns)
    check("SQLAlchemy get_pk_constraint", pk)
    check("SQLAlchemy get_indexes", indexes)
    check("SQLAlchemy get_foreign_keys", foreign_keys)
    check("SQLAlchemy Table reflection and select", reflect_and_query)
    engine.dispose()


if __name__ == "__main__":
    check("psycopg connect", psycopg_checks)
    asyncio.run(asyncpg_checks())
    sqlalchemy_checks()
    sys.exit(1 if failed else 0)
