//! `cartflow cdc seed`: an `events` table shaped like the dataset, with a real
//! primary key (not the event time) and `REPLICA IDENTITY FULL` (so deletes
//! carry the whole row), filled with generated events at a chosen rate.

use std::time::{Duration, Instant};

use cartflow_sources::{Generator, GeneratorConfig};
use tokio_postgres::Client;

use crate::table::qualified;
use crate::{CdcError, Result};

/// Creates the table when it does not exist.
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    let (_, _, t) = qualified(table);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_time timestamptz NOT NULL,
                event_type text NOT NULL,
                product_id bigint NOT NULL,
                category_id bigint NOT NULL,
                category_code text,
                brand text,
                price numeric(12, 2) NOT NULL,
                user_id bigint NOT NULL,
                user_session text
            );
            ALTER TABLE {t} REPLICA IDENTITY FULL;"
        ))
        .await
        .map_err(|e| CdcError::Postgres(format!("creating {table}: {e}")))
}

/// Inserts `events` generated events, `rate` per second (0: as fast as
/// possible), in transactions of at most 1,000 rows; calls `progress` with
/// the rows so far.
pub async fn insert_generated(
    client: &Client,
    table: &str,
    cfg: GeneratorConfig,
    rate: f64,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let (_, _, t) = qualified(table);
    // Arrays in, one statement per batch: far fewer round trips than row by row.
    let insert = client
        .prepare(&format!(
            "INSERT INTO {t} (event_time, event_type, product_id, category_id, category_code, brand, price, user_id, user_session)
             SELECT * FROM unnest($1::text[]::timestamptz[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[],
                                  $7::float8[]::numeric[], $8::int8[], $9::text[])"
        ))
        .await
        .map_err(|e| CdcError::Postgres(format!("preparing the insert into {table}: {e}")))?;
    let batch = if rate > 0.0 { (rate / 10.0).clamp(1.0, 1000.0) as usize } else { 1000 };
    let started = Instant::now();
    let mut generator = Generator::new(cfg).peekable();
    let mut written = 0u64;
    while generator.peek().is_some() {
        let events: Vec<_> = generator.by_ref().take(batch).collect();
        let mut time = Vec::with_capacity(events.len());
        for e in &events {
            let mut s = String::new();
            cartflow_core::time::format_rfc3339(e.event_time, &mut s);
            time.push(s);
        }
        let kind: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let product: Vec<i64> = events.iter().map(|e| e.product_id).collect();
        let category: Vec<i64> = events.iter().map(|e| e.category_id).collect();
        let code: Vec<Option<&str>> = events.iter().map(|e| e.category_code.as_deref()).collect();
        let brand: Vec<Option<&str>> = events.iter().map(|e| e.brand.as_deref()).collect();
        let price: Vec<f64> = events.iter().map(|e| e.price).collect();
        let user: Vec<i64> = events.iter().map(|e| e.user_id).collect();
        let session: Vec<Option<&str>> = events.iter().map(|e| e.user_session.as_deref()).collect();
        client
            .execute(&insert, &[&time, &kind, &product, &category, &code, &brand, &price, &user, &session])
            .await
            .map_err(|e| CdcError::Postgres(format!("inserting into {table}: {e}")))?;
        written += events.len() as u64;
        progress(written);
        if rate > 0.0 {
            let due = Duration::from_secs_f64(written as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    Ok(written)
}
