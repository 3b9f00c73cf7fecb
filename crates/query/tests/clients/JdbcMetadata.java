// What a BI tool does over pgjdbc (Metabase, Tableau and DBeaver connect through it) when it
// connects and syncs: every DatabaseMetaData call on every table, then data, a prepared
// statement and a fetch-size cursor. Run by `tests/sql.rs` as a single-file program:
//
//     java -cp /usr/share/java/postgresql.jar JdbcMetadata.java PORT
//
// Prints one line per fact (`schemas ...`, `table S.T`, `column S.T.C TYPE`, `pk S.T C SEQ`,
// `privilege S.T PRIV`, `types N`, `rows N`, ...) for the test to check, and one `FAILED what:
// message` line per call that threw; exits 1 when any did. A call docs/sql.md lists as not
// working yet prints `UNSUPPORTED what: message` instead (`unsupported`), so the test notices
// when it starts working and the docs can say so.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class JdbcMetadata {
    static int failures = 0;

    interface Call {
        void run() throws SQLException;
    }

    static void attempt(String what, Call call) {
        try {
            call.run();
        } catch (SQLException e) {
            failures++;
            String message = e.getMessage() == null ? "" : e.getMessage().replace('\n', ' ');
            System.out.println("FAILED " + what + ": " + e.getSQLState() + " " + message);
        }
    }

    static void unsupported(String what, Call call) {
        try {
            call.run();
            System.out.println("WORKS " + what);
        } catch (SQLException e) {
            String message = e.getMessage() == null ? "" : e.getMessage().replace('\n', ' ');
            System.out.println("UNSUPPORTED " + what + ": " + e.getSQLState() + " " + message);
        }
    }

    /** Reads a result set to the end, so that every row is decoded. */
    static int drain(ResultSet rs) throws SQLException {
        int columns = rs.getMetaData().getColumnCount();
        int rows = 0;
        while (rs.next()) {
            for (int i = 1; i <= columns; i++) {
                rs.getObject(i);
            }
            rows++;
        }
        rs.close();
        return rows;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/baton";
        Properties props = new Properties();
        props.setProperty("user", "analyst");
        props.setProperty("password", args.length > 1 ? args[1] : "unused");
        props.setProperty("connectTimeout", "10");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product " + meta.getDatabaseProductName() + " "
                    + meta.getDatabaseProductVersion());
            List<String[]> tables = new ArrayList<>();
            attempt("getSchemas", () -> {
                ResultSet rs = meta.getSchemas();
                while (rs.next()) {
                    System.out.println("schema " + rs.getString("TABLE_SCHEM"));
                }
            });
            attempt("getCatalogs", () -> drain(meta.getCatalogs()));
            attempt("getTableTypes", () -> drain(meta.getTableTypes()));
            attempt("getTables", () -> {
                ResultSet rs = meta.getTables(null, null, "%", new String[] {"TABLE", "VIEW"});
                while (rs.next()) {
                    String schema = rs.getString("TABLE_SCHEM");
                    String name = rs.getString("TABLE_NAME");
                    tables.add(new String[] {schema, name});
                    String remarks = rs.getString("REMARKS");
                    System.out.println("table " + schema + "." + name + " "
                            + rs.getString("TABLE_TYPE") + " remarks="
                            + (remarks == null ? "" : remarks.length()));
                }
            });
            for (String[] t : tables) {
                String schema = t[0];
                String name = t[1];
                String table = schema + "." + name;
                attempt("getColumns " + table, () -> {
                    ResultSet rs = meta.getColumns(null, schema, name, "%");
                    while (rs.next()) {
                        String remarks = rs.getString("REMARKS");
                        System.out.println("column " + table + "." + rs.getString("COLUMN_NAME")
                                + " " + rs.getString("TYPE_NAME") + " " + rs.getInt("DATA_TYPE")
                                + " " + rs.getInt("ORDINAL_POSITION") + " remarks="
                                + (remarks == null ? "" : remarks.length()));
                    }
                });
                attempt("getPrimaryKeys " + table, () -> {
                    ResultSet rs = meta.getPrimaryKeys(null, schema, name);
                    while (rs.next()) {
                        System.out.println("pk " + table + " " + rs.getString("COLUMN_NAME")
                                + " " + rs.getInt("KEY_SEQ"));
                    }
                });
                attempt("getImportedKeys " + table, () -> drain(meta.getImportedKeys(null, schema, name)));
                attempt("getExportedKeys " + table, () -> drain(meta.getExportedKeys(null, schema, name)));
                attempt("getIndexInfo " + table, () -> {
                    ResultSet rs = meta.getIndexInfo(null, schema, name, false, true);
                    while (rs.next()) {
                        System.out.println("index " + table + " " + rs.getString("INDEX_NAME")
                                + " " + rs.getString("COLUMN_NAME") + " unique="
                                + !rs.getBoolean("NON_UNIQUE"));
                    }
                });
                attempt("getTablePrivileges " + table, () -> {
                    ResultSet rs = meta.getTablePrivileges(null, schema, name);
                    while (rs.next()) {
                        System.out.println("privilege " + table + " " + rs.getString("PRIVILEGE"));
                    }
                });
                attempt("getColumnPrivileges " + table,
                        () -> drain(meta.getColumnPrivileges(null, schema, name, "%")));
                attempt("getBestRowIdentifier " + table,
                        () -> drain(meta.getBestRowIdentifier(null, schema, name,
                                DatabaseMetaData.bestRowSession, true)));
                attempt("select " + table, () -> {
                    try (Statement st = conn.createStatement()) {
                        ResultSet rs = st.executeQuery("select * from \"" + schema + "\".\"" + name
                                + "\" limit 5");
                        ResultSetMetaData rsmd = rs.getMetaData();
                        for (int i = 1; i <= rsmd.getColumnCount(); i++) {
                            rsmd.getColumnTypeName(i);
                            rsmd.isNullable(i);
                        }
                        drain(rs);
                    }
                });
            }
            attempt("getTypeInfo", () -> System.out.println("types " + drain(meta.getTypeInfo())));
            // FUNCTION_TYPE: 1 returns no table, 2 returns a table (a set).
            for (String function : new String[] {"abs", "generate_series"}) {
                attempt("getFunctions " + function, () -> {
                    ResultSet rs = meta.getFunctions(null, "pg_catalog", function);
                    while (rs.next()) {
                        System.out.println("function " + rs.getString("FUNCTION_SCHEM") + "."
                                + rs.getString("FUNCTION_NAME") + " type="
                                + rs.getShort("FUNCTION_TYPE"));
                    }
                });
            }
            attempt("getProcedures", () -> drain(meta.getProcedures(null, "public", "%")));
            attempt("getUDTs", () -> drain(meta.getUDTs(null, null, "%", null)));
            attempt("getClientInfoProperties", () -> drain(meta.getClientInfoProperties()));
            attempt("prepared", () -> {
                try (PreparedStatement ps = conn.prepareStatement(
                        "select count(*) as n from person_scores where engagement >= ?")) {
                    ps.setDouble(1, 0.0);
                    ResultSet rs = ps.executeQuery();
                    rs.next();
                    System.out.println("prepared " + rs.getLong("n"));
                }
            });
            attempt("cursor", () -> {
                // A fetch size only makes pgjdbc use a portal inside a transaction.
                conn.setAutoCommit(false);
                try (Statement st = conn.createStatement()) {
                    st.setFetchSize(7);
                    ResultSet rs = st.executeQuery("select * from person_scores");
                    System.out.println("cursor " + drain(rs));
                }
                conn.commit();
                conn.setAutoCommit(true);
            });
        }
        System.out.println("failures " + failures);
        System.exit(failures == 0 ? 0 : 1);
    }
}
