"""What Superset does on connecting to a database and adding a dataset, through the real
SQLAlchemy with the psycopg2 driver: read the server version, list schemas and tables, reflect
every table of a schema (columns, primary key, foreign keys, indexes, unique constraints, the
table's comment) as Superset does for a new dataset, preview a reflected table with a `SELECT`
SQLAlchemy builds itself, and run a query with a bound parameter. Prints one JSON object for the
Rust test that runs it.

usage: python3 sqlalchemy_inspect.py PORT PASSWORD SCHEMA
"""

import json
import sys

import sqlalchemy as sa

port, password, schema = sys.argv[1], sys.argv[2], sys.argv[3]
engine = sa.create_engine(f"postgresql+psycopg2://analyst:{password}@127.0.0.1:{port}/baton")
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
    print(
        json.dumps(
            {
                "version": connection.execute(sa.text("select version()")).scalar(),
                "schemas": inspector.get_schema_names(),
                "tables": inspector.get_table_names(),
                "stages": [[stage, int(count)] for stage, count in entered],
                "reflected": reflected,
                "preview": [[stage, int(count)] for stage, count in preview],
            }
        )
    )
