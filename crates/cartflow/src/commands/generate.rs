//! `cartflow generate`: synthetic events to a `.csv` or `.csv.gz` file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::{Context, Result};
use cartflow_core::CSV_HEADER;
use cartflow_sources::Generator;

use super::{Ctx, generator_config, per_sec};
use crate::cli::GenerateArgs;
use crate::telemetry::{progress, thousands};

pub fn run(ctx: &Ctx, a: GenerateArgs) -> Result<()> {
    let gen_cfg = generator_config(&a.generator, a.events, None)?;
    let started = Instant::now();
    let file = File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let gz = a.out.extension().is_some_and(|e| e == "gz");
    let mut out: Box<dyn Write> = if gz {
        // Fast compression: the default level would make gzip the bottleneck.
        Box::new(flate2::write::GzEncoder::new(BufWriter::with_capacity(1 << 20, file), flate2::Compression::fast()))
    } else {
        Box::new(BufWriter::with_capacity(1 << 20, file))
    };
    let bar = progress(ctx.quiet, Some(a.events), "generate");
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut buf = String::with_capacity(1 << 20);
    buf.push_str(CSV_HEADER);
    buf.push('\n');
    let mut n = 0u64;
    for event in Generator::new(gen_cfg) {
        event.write_csv(&mut buf);
        buf.push('\n');
        *counts.entry(event.event_type.as_str()).or_default() += 1;
        n += 1;
        if buf.len() >= (1 << 20) - 512 {
            out.write_all(buf.as_bytes())?;
            buf.clear();
            bar.set_position(n);
        }
        if n.is_multiple_of(65_536) && ctx.control.stopped() {
            break;
        }
    }
    out.write_all(buf.as_bytes())?;
    out.flush()?;
    drop(out);
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&a.out)?.len();
    let shares: Vec<String> =
        counts.iter().map(|(t, c)| format!("{t} {:.1}%", 100.0 * *c as f64 / n.max(1) as f64)).collect();
    println!(
        "wrote {} events to {} ({:.1} MB) in {secs:.2} s, {} events/s",
        thousands(n),
        a.out.display(),
        bytes as f64 / 1e6,
        thousands(per_sec(n, secs) as u64)
    );
    println!("  {}", shares.join(", "));
    Ok(())
}
