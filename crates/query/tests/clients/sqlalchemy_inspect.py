"""What Superset does first on connecting to a database, through the real SQLAlchemy with the
psycopg2 driver: read the server version, list schemas and tables, and run a query with a
bound parameter. Prints one JSON object for the Rust test that runs it.

Column reflection (`inspector.get_columns`) does not work yet: SQLAlchemy's query uses
correlated scalar subqueries that DataFusion refuses to plan (docs/sql.md).

usage: python3 sqlalchemy_inspect.py PORT PASSWORD
"""

import json
import sys

import sqlalchemy as sa

port, password = sys.argv[1], sys.argv[2]
engine = sa.create_engine(f"postgresql+psycopg2://analyst:{password}@127.0.0.1:{port}/baton")
with engine.connect() as connection:
    inspector = sa.inspect(connection)
    entered = connection.execute(
        sa.text("select stage, entered from stages where entered >= :least order by stage"),
        {"least": 0},
    ).fetchall()
    print(
        json.dumps(
            {
                "version": connection.execute(sa.text("select version()")).scalar(),
                "schemas": inspector.get_schema_names(),
                "tables": inspector.get_table_names(),
                "stages": [[stage, int(count)] for stage, count in entered],
            }
        )
    )
