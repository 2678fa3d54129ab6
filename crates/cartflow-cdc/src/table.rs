//! The PostgreSQL session a capture works in and the table it captures.

use tokio_postgres::{Client, NoTls};

use crate::pgoutput::Column;
use crate::{CdcError, Result};

/// The table being captured.
pub(crate) struct Table {
    pub schema: String,
    pub name: String,
    pub db: String,
    pub columns: Vec<Column>,
    /// Index of the primary-key column.
    pub pk: usize,
}

/// Maps a driver error to the message PostgreSQL gave, saying what was being done.
pub(crate) fn pg(what: &str) -> impl Fn(tokio_postgres::Error) -> CdcError + '_ {
    move |e| {
        let message = format!("{what}: {}", e.as_db_error().map_or(e.to_string(), |d| d.message().to_owned()));
        if unavailable(&e) { CdcError::Unavailable(message) } else { CdcError::Postgres(message) }
    }
}

/// Whether the server went away rather than refused the request: the
/// connection closed or failed, or the server is shutting down or starting.
fn unavailable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let going = [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW];
    e.is_closed()
        || e.code().is_some_and(|c| c.code().starts_with("08") || going.contains(c))
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// A session, its connection driven on the current runtime.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(pg("connecting"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!("postgres connection: {e}");
        }
    });
    // Timestamps decoded by this session come out in UTC.
    client.batch_execute("SET TimeZone = 'UTC'").await.map_err(pg("setting the time zone"))?;
    Ok(client)
}

/// Splits `schema.table` (default schema `public`) and quotes both.
pub fn qualified(table: &str) -> (String, String, String) {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    (schema.to_owned(), name.to_owned(), format!("{}.{}", quote(schema), quote(name)))
}

pub(crate) async fn describe(client: &Client, table: &str) -> Result<Table> {
    let (schema, name, _) = qualified(table);
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid::int8, coalesce(i.indisprimary, false)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY(i.indkey)
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&schema, &name],
        )
        .await
        .map_err(pg("reading the table's columns"))?;
    if rows.is_empty() {
        return Err(CdcError::Table(format!("{table}: no such table")));
    }
    let columns: Vec<Column> =
        rows.iter().map(|r| Column { name: r.get(0), type_oid: r.get::<_, i64>(1) as u32, key: r.get(2) }).collect();
    let keys: Vec<usize> = columns.iter().enumerate().filter(|(_, c)| c.key).map(|(i, _)| i).collect();
    let integer = |oid: u32| matches!(oid, 20 | 21 | 23);
    let [pk] = keys[..] else {
        return Err(CdcError::Table(format!("{table}: needs a primary key of one integer column")));
    };
    if !integer(columns[pk].type_oid) {
        return Err(CdcError::Table(format!("{table}: its primary key {} is not an integer", columns[pk].name)));
    }
    let identity: String = client
        .query_one(
            "SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .await
        .map_err(pg("reading the replica identity"))?
        .get(0);
    if identity != "f" {
        tracing::warn!(
            "{table}: REPLICA IDENTITY is not FULL, so deletes and updates carry only the key in `before`; \
             `ALTER TABLE {table} REPLICA IDENTITY FULL` gives the whole row"
        );
    }
    let db: String = client.query_one("SELECT current_database()::text", &[]).await.map_err(pg("reading"))?.get(0);
    Ok(Table { schema, name, db, columns, pk })
}
