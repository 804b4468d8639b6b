// Driver matrix, Java side: pgjdbc as a restricted account over TLS. Prints
// `ok <check>` or `FAIL <check>: <why>`; exits 1 on failure. Run by
// tests/driver_matrix.rs with the PostgreSQL JDBC driver on the class path.
import java.sql.*;
import java.util.*;

public class JdbcDrivers {
    static final List<String> COLUMNS =
        List.of("id", "full_name", "citizen_id", "province_code", "employer_id", "birth_date");
    static int failed = 0;

    interface Check { void run() throws Exception; }

    static void check(String name, Check c) {
        try {
            c.run();
            System.out.println("ok " + name);
        } catch (Throwable e) {
            failed++;
            System.out.println("FAIL " + name + ": " + e);
        }
    }

    static void expect(boolean condition, String message) {
        if (!condition) throw new AssertionError(message);
    }

    static Connection connect(String extra) throws SQLException {
        String url = "jdbc:postgresql://" + System.getenv("MG_HOST") + ":" + System.getenv("MG_PORT")
            + "/" + System.getenv("MG_DB") + "?sslmode=verify-ca&sslrootcert=" + System.getenv("MG_CA") + extra;
        return DriverManager.getConnection(url, System.getenv("MG_USER"), System.getenv("MG_PASSWORD"));
    }

    static void expectPerson(ResultSet rs) throws SQLException {
        ResultSetMetaData md = rs.getMetaData();
        List<String> names = new ArrayList<>();
        for (int i = 1; i <= md.getColumnCount(); i++) names.add(md.getColumnName(i));
        expect(names.equals(COLUMNS), "columns " + names);
        expect(rs.next(), "a row");
        expect("********4002".equals(rs.getString("citizen_id")), "citizen_id " + rs.getString("citizen_id"));
        for (int i = 1; i <= md.getColumnCount(); i++) {
            String v = rs.getString(i);
            expect(v == null || (!v.contains("001203004002") && !v.startsWith("0999")), "a raw value came back");
        }
    }

    static void lookups(Connection c, int times) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT * FROM person WHERE id = ?")) {
            for (int i = 0; i < times; i++) {
                ps.setLong(1, 2);
                try (ResultSet rs = ps.executeQuery()) { expectPerson(rs); }
            }
        }
    }

    static List<String> strings(ResultSet rs, String column) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) out.add(rs.getString(column));
        rs.close();
        return out;
    }

    public static void main(String[] args) throws Exception {
        Connection[] conn = new Connection[1];
        check("pgjdbc connect", () -> conn[0] = connect(""));
        if (conn[0] == null) System.exit(1);
        Connection c = conn[0];
        check("pgjdbc default prepareThreshold (server-prepared after 5)", () -> lookups(c, 7));
        check("pgjdbc prepareThreshold=1 and binary transfer", () -> {
            try (Connection b = connect("&prepareThreshold=1&binaryTransfer=true")) { lookups(b, 3); }
        });
        check("pgjdbc fetch size", () -> {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(4);
                int n = 0;
                try (ResultSet rs = s.executeQuery("SELECT * FROM person ORDER BY id")) {
                    while (rs.next()) n++;
                }
                expect(n == 20, n + " rows");
            } finally {
                c.commit();
                c.setAutoCommit(true);
            }
        });
        check("pgjdbc denied column refused", () -> {
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT phone FROM person");
                throw new AssertionError("phone was readable");
            } catch (SQLException e) {
                expect("42501".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState());
            }
        });
        DatabaseMetaData md = c.getMetaData();
        check("pgjdbc DatabaseMetaData.getTables", () -> {
            List<String> t = strings(md.getTables(null, "public", "%", new String[] {"TABLE"}), "TABLE_NAME");
            expect(t.equals(List.of("employer", "person")), "tables " + t);
        });
        check("pgjdbc DatabaseMetaData.getColumns", () -> {
            List<String> cols = strings(md.getColumns(null, "public", "person", "%"), "COLUMN_NAME");
            expect(cols.equals(COLUMNS), "columns " + cols);
        });
        check("pgjdbc DatabaseMetaData.getPrimaryKeys", () -> {
            List<String> pk = strings(md.getPrimaryKeys(null, "public", "person"), "COLUMN_NAME");
            expect(pk.equals(List.of("id")), "primary key " + pk);
        });
        check("pgjdbc DatabaseMetaData.getSchemas", () -> {
            List<String> s = strings(md.getSchemas(), "TABLE_SCHEM");
            expect(s.contains("public"), "schemas " + s);
        });
        check("pgjdbc DatabaseMetaData.getIndexInfo", () -> {
            List<String> i = strings(md.getIndexInfo(null, "public", "person", false, false), "INDEX_NAME");
            expect(new TreeSet<>(i).equals(new TreeSet<>(List.of("person_citizen_key", "person_pkey"))), "indexes " + i);
        });
        check("pgjdbc ResultSetMetaData", () -> {
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT * FROM person WHERE id = 2")) {
                org.postgresql.PGResultSetMetaData r = rs.getMetaData().unwrap(org.postgresql.PGResultSetMetaData.class);
                expect("person".equals(r.getBaseTableName(1)), "base table " + r.getBaseTableName(1));
                expect(rs.getMetaData().isNullable(1) == ResultSetMetaData.columnNoNulls, "id is NOT NULL");
                expect(!rs.getMetaData().isAutoIncrement(1), "id is not serial");
                expect("citizen_id".equals(rs.getMetaData().getColumnName(3)), "masked column keeps its name");
            }
        });
        c.close();
        System.exit(failed == 0 ? 0 : 1);
    }
}
