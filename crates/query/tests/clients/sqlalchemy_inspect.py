"""What Superset does on connecting to a database and adding a dataset, through the real
SQLAlchemy with psycopg 3 (`postgresql+psycopg`, current SQLAlchemy's default PostgreSQL driver)
or psycopg2: read the server version, list schemas and tables, reflect
every table of a schema (columns, primary key, foreign keys, indexes, unique constraints, the
table's comment) as Superset does for a new dataset, preview a reflected table with a `SELECT`
SQLAlchemy builds itself, and run a query with a bound parameter; then what pandas does with
`read_sql_table`, and a query streamed through a server-side (named) cursor. Prints one JSON
object for the Rust test that runs it.

usage: python3 sqlalchemy_inspect.py PORT PASSWORD SCHEMA DRIVER (psycopg or psycopg2)
"""

import json
import sys

import pandas
import sqlalchemy as sa

port, password, schema, driver = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
engine = sa.create_engine(f"postgresql+{driver}://analyst:{password}@127.0.0.1:{port}/baton")
with engine.connect() as connection:
    inspector = sa.inspect(connection)
    entered = connection.execute(
        sa.text("select stage, entered from stages where entered >= :least order by stage"),
        {"least": 0},
    ).fetchall()
    reflected = {}
    for table in inspector.get_table_names(schema=schema):
        reflected[table] = {
            "columns": [
                [column["name"], type(column["type"]).__name__]
                for column in inspector.get_columns(table, schema=schema)
            ],
            "primary_key": inspector.get_pk_constraint(table, schema=schema)[
                "constrained_columns"
            ],
            "foreign_keys": inspector.get_foreign_keys(table, schema=schema),
            "indexes": inspector.get_indexes(table, schema=schema),
            "unique": inspector.get_unique_constraints(table, schema=schema),
            "comment": inspector.get_table_comment(table, schema=schema)["text"],
        }
    # Superset's data preview: the reflected table, selected by SQLAlchemy's own query.
    stages = sa.Table("stages", sa.MetaData(), schema=schema, autoload_with=connection)
    preview = connection.execute(
        sa.select(stages.c.stage, stages.c.entered).order_by(stages.c.stage).limit(100)
    ).fetchall()
    # pandas reflects the table and reads all of it.
    frame = pandas.read_sql_table("person_scores", connection, schema=schema)
    # A server-side cursor (DECLARE ... CURSOR, then FETCH), read in batches of 10.
    streamed = 0
    with connection.execution_options(stream_results=True, max_row_buffer=10).execute(
        sa.text("select person, engagement from person_scores order by person")
    ) as result:
        for _ in result:
            streamed += 1
    print(
        json.dumps(
            {
                "version": connection.execute(sa.text("select version()")).scalar(),
                "schemas": inspector.get_schema_names(),
                "tables": inspector.get_table_names(),
                "stages": [[stage, int(count)] for stage, count in entered],
                "reflected": reflected,
                "preview": [[stage, int(count)] for stage, count in preview],
                "frame": [len(frame), list(frame.columns)],
                "streamed": streamed,
            }
        )
    )
