// What DBeaver and other JDBC tools call on connect, through pgjdbc (Debian's
// libpostgresql-jdbc-java): DatabaseMetaData.getTables / getColumns, then a
// PreparedStatement with a parameter. Prints one line per finding for
// tests/interop/test_serve_pg.py to check.
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;

public class JdbcCheck {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        try (Connection conn = DriverManager.getConnection(url, "icefjord", "")) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product=" + meta.getDatabaseProductName() + " "
                    + meta.getDatabaseProductVersion());
            try (ResultSet tables = meta.getTables(null, "unified", "%", new String[] {"TABLE", "VIEW"})) {
                while (tables.next()) {
                    System.out.println("table=" + tables.getString("TABLE_SCHEM") + "."
                            + tables.getString("TABLE_NAME") + ":" + tables.getString("TABLE_TYPE"));
                }
            }
            try (ResultSet tables = meta.getTables(null, "raw", "retail%", null)) {
                while (tables.next()) {
                    System.out.println("table=" + tables.getString("TABLE_SCHEM") + "."
                            + tables.getString("TABLE_NAME") + ":" + tables.getString("TABLE_TYPE"));
                }
            }
            try (ResultSet columns = meta.getColumns(null, "unified", "sales_by_category", "%")) {
                while (columns.next()) {
                    System.out.println("column=" + columns.getString("COLUMN_NAME") + ":"
                            + columns.getString("TYPE_NAME") + ":" + columns.getInt("ORDINAL_POSITION"));
                }
            }
            try (PreparedStatement stmt = conn.prepareStatement(
                    "SELECT category, sales_units FROM unified.sales_by_category WHERE category = ?")) {
                stmt.setString(1, args[1]);
                try (ResultSet rows = stmt.executeQuery()) {
                    while (rows.next()) {
                        System.out.println("row=" + rows.getString(1) + ":" + rows.getLong(2));
                    }
                }
            }
        }
    }
}
