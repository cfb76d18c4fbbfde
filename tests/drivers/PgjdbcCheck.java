// pgjdbc through Lagoon, with its automatic server-side preparation left on: after
// prepareThreshold executions of the same SQL (default 5) pgjdbc switches from the unnamed
// statement to a named one (S_N), kept in its per-connection statement cache (so a new
// PreparedStatement object for the same SQL reuses it), and executes it by name afterwards, on
// whichever server the transaction lands on.
//
// Usage: java -cp postgresql.jar PgjdbcCheck.java URL TABLE ITERATIONS
// (URL as postgres://user:password@host:port/db; a single-file source program, so a JDK.)
//
// Two connections take turns, each iteration its own (autocommit) transactions. The first keeps
// the default prepareThreshold (5); the second sets 1 and first uses the statements in the
// opposite order, so the same statement name means a different SQL text on each connection.
// Every result is checked; any mismatch or unexpected error exits non-zero. The last line is a
// summary with the number of distinct server backends (pg_backend_pid()) each connection's
// transactions ran on. Run by tests/integration/drivers.rs.

import java.math.BigDecimal;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Properties;
import java.util.Set;
import org.postgresql.PGStatement;

public class PgjdbcCheck {
    static final String ADD = "SELECT ?::int + ?::int AS sum, ?::text || '!' AS shout";
    static final String TYPES =
            "SELECT ?::int8 AS big, ?::float8 AS f, ?::bool AS b, ?::text AS t, "
                    + "?::numeric AS n, ?::bytea AS raw, ?::date AS d, NULL::int AS nothing, "
                    + "ARRAY[?::int, ?::int + 1] AS arr";
    static final String DIV = "SELECT 10 / ?::int";
    static final String TRIPLE = "SELECT ?::int * 3";
    static final String PID = "SELECT pg_backend_pid()";
    static final String COUNT = "SELECT count(*), coalesce(sum(id), 0) FROM %s WHERE conn = ?";
    static final String INSERT = "INSERT INTO %s (id, conn, name, amount) VALUES (?, ?, ?, ?)";

    final String table;
    long statements = 0;
    long transactions = 0;
    long serverPrepared = 0; // executions by a named server-side statement
    final List<Set<Integer>> pids = List.of(new HashSet<>(), new HashSet<>());
    final List<List<Integer>> inserted = List.of(new ArrayList<>(), new ArrayList<>());

    PgjdbcCheck(String table) {
        this.table = table;
    }

    static void fail(String what) {
        System.err.println("FAIL pgjdbc: " + what);
        System.err.flush();
        System.exit(1);
    }

    static void expect(String what, Object got, Object want) {
        if (!Objects.deepEquals(got, want)) {
            fail(what + ": got " + show(got) + ", expected " + show(want));
        }
    }

    static String show(Object o) {
        if (o instanceof Object[] a) return Arrays.deepToString(a);
        if (o instanceof byte[] b) return Arrays.toString(b);
        return String.valueOf(o);
    }

    /** A new PreparedStatement for the SQL, as most JDBC code does per use. */
    PreparedStatement prep(Connection c, String sql, Object... params) throws SQLException {
        PreparedStatement ps = c.prepareStatement(sql);
        for (int i = 0; i < params.length; i++) ps.setObject(i + 1, params[i]);
        return ps;
    }

    /** Executes and returns the one row's columns. */
    Object[] one(Connection c, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = prep(c, sql, params)) {
            if (ps.unwrap(PGStatement.class).isUseServerPrepare()) serverPrepared++;
            try (ResultSet rs = ps.executeQuery()) {
                statements++;
                if (!rs.next()) fail(sql + ": no row");
                int n = rs.getMetaData().getColumnCount();
                Object[] row = new Object[n];
                for (int i = 0; i < n; i++) row[i] = column(rs, i + 1);
                if (rs.next()) fail(sql + ": more than one row");
                return row;
            }
        }
    }

    static Object column(ResultSet rs, int i) throws SQLException {
        String type = rs.getMetaData().getColumnTypeName(i);
        return switch (type) {
            case "date" -> rs.getObject(i, LocalDate.class);
            case "bytea" -> rs.getBytes(i);
            case "_int4" -> rs.getArray(i) == null ? null : (Object[]) rs.getArray(i).getArray();
            default -> rs.getObject(i);
        };
    }

    void add(Connection c, int i) throws SQLException {
        expect("ADD", one(c, ADD, i, 7, "x" + i), new Object[] {i + 7, "x" + i + "!"});
    }

    Object[] typesParams(int i) {
        return new Object[] {
            10_000_000_000L + i, i + 0.5, i % 2 == 0, "t" + i, new BigDecimal(i + ".25"),
            new byte[] {(byte) (i % 256), 0, (byte) 255}, LocalDate.of(2024, 1, 1).plusDays(i), i, i
        };
    }

    Object[] typesWant(int i) {
        return new Object[] {
            10_000_000_000L + i, i + 0.5, i % 2 == 0, "t" + i, new BigDecimal(i + ".25"),
            new byte[] {(byte) (i % 256), 0, (byte) 255}, LocalDate.of(2024, 1, 1).plusDays(i),
            null, new Integer[] {i, i + 1}
        };
    }

    void types(Connection c, int i) throws SQLException {
        expect("TYPES", one(c, TYPES, typesParams(i)), typesWant(i));
    }

    int pid(Connection c, int k) throws SQLException {
        int pid = (Integer) one(c, PID)[0];
        pids.get(k).add(pid);
        return pid;
    }

    void insert(Connection c, int k, int i, boolean record) throws SQLException {
        BigDecimal amount = new BigDecimal(i).divide(BigDecimal.valueOf(4));
        try (PreparedStatement ps = prep(c, String.format(INSERT, table), i, k, "row " + i, amount)) {
            if (ps.unwrap(PGStatement.class).isUseServerPrepare()) serverPrepared++;
            expect("INSERT count", ps.executeUpdate(), 1);
            statements++;
        }
        if (record) inserted.get(k).add(i);
    }

    void count(Connection c, int k) throws SQLException {
        List<Integer> ids = inserted.get(k);
        long sum = ids.stream().mapToLong(Integer::longValue).sum();
        Object[] got = one(c, String.format(COUNT, table), k);
        expect("COUNT conn " + k, new Object[] {got[0], ((Number) got[1]).longValue()},
                new Object[] {(long) ids.size(), sum});
    }

    static void expectDivisionByZero(SQLException e) throws SQLException {
        if (!"22012".equals(e.getSQLState())) throw e;
    }

    void divisionErrorThenReuse(Connection c, int i) throws SQLException {
        try {
            one(c, DIV, 0);
            fail("10 / 0 did not fail");
        } catch (SQLException e) {
            expectDivisionByZero(e);
        }
        statements++;
        expect("DIV after its error", one(c, DIV, 2), new Object[] {5});
        add(c, i);
    }

    void explicitTransaction(Connection c, int k, int i) throws SQLException {
        c.setAutoCommit(false);
        int first = pid(c, k);
        add(c, i);
        insert(c, k, 100_000 + i, true);
        types(c, i);
        count(c, k);
        expect("backend inside one transaction", pid(c, k), first);
        c.commit();
        c.setAutoCommit(true);
        transactions++;
    }

    void failedTransactionThenReuse(Connection c, int k, int i) throws SQLException {
        c.setAutoCommit(false);
        add(c, i);
        insert(c, k, 200_000 + i, false); // rolled back below
        try {
            one(c, DIV, 0);
            fail("10 / 0 did not fail inside a transaction");
        } catch (SQLException e) {
            expectDivisionByZero(e);
        }
        statements++;
        c.rollback();
        c.setAutoCommit(true);
        transactions++;
        // The same statements, after the rollback, wherever the next transaction lands.
        expect("DIV after a rolled-back transaction", one(c, DIV, 5), new Object[] {2});
        count(c, k);
        transactions += 2;
    }

    interface Step {
        void run(Connection c, int k) throws SQLException;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: PgjdbcCheck URL TABLE ITERATIONS");
            System.exit(2);
        }
        try {
            run(args[0], args[1], Integer.parseInt(args[2]));
        } catch (SQLException e) {
            fail(e.getClass().getSimpleName() + " [" + e.getSQLState() + "]: " + e.getMessage());
        }
    }

    static Connection connect(URI uri, String prepareThreshold) throws SQLException {
        String[] userInfo = uri.getRawUserInfo().split(":", 2);
        Properties props = new Properties();
        props.setProperty("user", URLDecoder.decode(userInfo[0], StandardCharsets.UTF_8));
        props.setProperty("password", URLDecoder.decode(userInfo[1], StandardCharsets.UTF_8));
        props.setProperty("sslmode", "disable");
        if (prepareThreshold != null) props.setProperty("prepareThreshold", prepareThreshold);
        String jdbc = "jdbc:postgresql://" + uri.getHost() + ":" + uri.getPort() + uri.getRawPath();
        return DriverManager.getConnection(jdbc, props);
    }

    static void run(String url, String table, int iterations) throws SQLException {
        URI uri = URI.create(url);
        PgjdbcCheck ck = new PgjdbcCheck(table);
        // The first connection keeps the default prepareThreshold; the second prepares at once.
        Connection[] conns = {connect(uri, null), connect(uri, "1")};
        try (Statement s = conns[0].createStatement()) {
            s.execute("DROP TABLE IF EXISTS " + table);
            s.execute("CREATE TABLE " + table
                    + " (id int, conn int, name text, amount numeric(12, 2), PRIMARY KEY (conn, id))");
        }
        // Warm-up in opposite orders: statement names are handed out in order of preparation.
        List<Step> warm = List.of(
                (c, k) -> ck.add(c, 0),
                (c, k) -> ck.types(c, 0),
                (c, k) -> ck.pid(c, k),
                (c, k) -> ck.count(c, k));
        for (int k = 0; k < 2; k++) {
            for (int j = 0; j < warm.size(); j++) {
                warm.get(k == 0 ? j : warm.size() - 1 - j).run(conns[k], k);
                ck.transactions++;
            }
        }
        for (int i = 1; i <= iterations; i++) {
            int k = i % 2;
            Connection c = conns[k];
            ck.add(c, i);
            ck.insert(c, k, i, true);
            ck.types(c, i);
            ck.pid(c, k);
            expect("TRIPLE", ck.one(c, TRIPLE, i), new Object[] {3 * i});
            ck.transactions += 5;
            // The periods are odd, so both connections get each of these in turn.
            if (i % 5 == 0) {
                ck.divisionErrorThenReuse(c, i);
                ck.transactions += 3;
            }
            if (i % 25 == 0) ck.explicitTransaction(c, k, i);
            if (i % 25 == 12) ck.failedTransactionThenReuse(c, k, i);
        }
        for (int k = 0; k < 2; k++) {
            ck.count(conns[k], k);
            ck.transactions++;
        }
        if (ck.serverPrepared == 0) fail("pgjdbc prepared no statement on the server");
        for (Connection c : conns) c.close();
        System.out.println("SUMMARY driver=pgjdbc-" + org.postgresql.util.DriverInfo.DRIVER_VERSION
                + " statements=" + ck.statements + " transactions=" + ck.transactions
                + " backends=" + ck.pids.get(0).size() + "," + ck.pids.get(1).size()
                + " server_prepared_executions=" + ck.serverPrepared);
    }
}
