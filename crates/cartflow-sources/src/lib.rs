//! Where events come from: the dataset's CSV files (plain or gzip) and a
//! generator of realistic synthetic events of the same schema. Both hand
//! events to the producer; neither knows about the log.

pub mod csv_reader;
pub mod generator;
pub mod json;

pub use csv_reader::{CsvError, CsvEventReader, CsvRow};
pub use generator::{Generator, GeneratorConfig, Profile};
