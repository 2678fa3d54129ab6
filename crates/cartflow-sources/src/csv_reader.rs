//! Reads the dataset's CSV files, plain or gzip (by extension or magic bytes).
//!
//! The header is checked; a UTF-8 BOM and CRLF line ends are tolerated; empty
//! fields are missing values. A row with the wrong number of fields is not an
//! error of the file: it is handed on as a broken row with its line number, so
//! the validator routes it to the invalid topic and the reader goes on.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use cartflow_core::{CSV_HEADER, FIELDS, Invalid, RawEvent};
use flate2::read::MultiGzDecoder;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path}: line 1: header is {found:?}, expected {CSV_HEADER:?}")]
    Header { path: PathBuf, found: String },
    #[error("{path}: line {line}: {cause}")]
    Csv { path: PathBuf, line: u64, cause: csv::Error },
}

/// One data row of a file.
#[derive(Debug)]
pub struct CsvRow {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// The row's fields, or why the row is broken.
    pub event: Result<RawEvent<'static>, Invalid>,
    /// The row as text (fields joined by commas), for the invalid topic.
    pub text: String,
}

pub struct CsvEventReader {
    path: PathBuf,
    reader: csv::Reader<Box<dyn Read + Send>>,
    record: csv::StringRecord,
    next_line: u64,
}

impl CsvEventReader {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CsvError> {
        let path = path.as_ref().to_owned();
        let io = |cause| CsvError::Io { path: path.clone(), cause };
        let mut file = BufReader::with_capacity(1 << 20, File::open(&path).map_err(io)?);
        let gz = std::io::BufRead::fill_buf(&mut file).map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let input: Box<dyn Read + Send> =
            if gz { Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(file))) } else { Box::new(file) };
        Self::from_reader(path, input)
    }

    /// Reads CSV from any byte stream; `path` only names it in errors.
    pub fn from_reader(path: PathBuf, input: Box<dyn Read + Send>) -> Result<Self, CsvError> {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(input);
        let mut record = csv::StringRecord::new();
        let found = match reader.read_record(&mut record) {
            Ok(true) => record.iter().collect::<Vec<_>>().join(","),
            Ok(false) => String::new(),
            Err(cause) => {
                return Err(CsvError::Csv { path, line: 1, cause });
            }
        };
        let found_clean = found.trim_start_matches('\u{feff}').trim();
        let names: Vec<&str> = found_clean.split(',').map(str::trim).collect();
        if names != FIELDS {
            return Err(CsvError::Header { path, found });
        }
        Ok(CsvEventReader { path, reader, record, next_line: 2 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next row; `None` at the end of the file.
    pub fn next_row(&mut self) -> Option<Result<CsvRow, CsvError>> {
        // Counted here: the csv crate's positions trail by a line (it eats a
        // record's line end when it reads the next record).
        let line = self.next_line;
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let inner_newlines = self.record.iter().map(|f| f.matches('\n').count() as u64).sum::<u64>();
                self.next_line += 1 + inner_newlines;
                let fields = self.record.iter().map(|f| f.trim_end_matches('\r').to_owned());
                let event = RawEvent::from_csv_fields(fields);
                let text = self.record.iter().collect::<Vec<_>>().join(",");
                Some(Ok(CsvRow { line, event, text }))
            }
            Err(cause) => {
                self.next_line += 1;
                Some(Err(CsvError::Csv { path: self.path.clone(), line, cause }))
            }
        }
    }
}

impl Iterator for CsvEventReader {
    type Item = Result<CsvRow, CsvError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cartflow_core::{InvalidReason, Rules, validate};
    use std::io::Write;

    fn real(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real").join(name)
    }

    fn count(path: &Path) -> (usize, Vec<(u64, Invalid)>) {
        let mut ok = 0;
        let mut broken = Vec::new();
        for row in CsvEventReader::open(path).unwrap() {
            let row = row.unwrap();
            match row.event {
                Ok(_) => ok += 1,
                Err(e) => broken.push((row.line, e)),
            }
        }
        (ok, broken)
    }

    #[test]
    fn reads_every_whole_row_of_the_real_samples() {
        let first = CsvEventReader::open(real("2019-Oct-head.csv")).unwrap().next().unwrap().unwrap();
        assert_eq!(first.line, 2, "the first row is on line 2, after the header");
        let (ok, broken) = count(&real("2019-Oct-head.csv"));
        assert_eq!(ok, 17_434);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert_eq!(broken[0].0, 17_436);
        assert_eq!(broken[0].1.reason, InvalidReason::FieldCount);
        assert_eq!(broken[0].1.field, "user_session");
        let (ok, broken) = count(&real("2019-Nov-head.csv"));
        assert_eq!((ok, broken.len()), (683, 0));
    }

    #[test]
    fn real_rows_validate_except_zero_prices() {
        let rules = Rules::default();
        let mut reasons = std::collections::BTreeMap::new();
        for row in CsvEventReader::open(real("2019-Nov-head.csv")).unwrap() {
            if let Err(e) = validate(&row.unwrap().event.unwrap(), &rules) {
                *reasons.entry(e.reason.as_str()).or_insert(0) += 1;
            }
        }
        assert!(reasons.keys().all(|r| *r == "non_positive_price"), "{reasons:?}");
    }

    #[test]
    fn gzip_bom_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let body = "\u{feff}event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\r\n\
                    2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-8bb3-4e00-8c23-a032dfed738c\r\n\
                    2019-10-01 00:00:01 UTC,cart,44600062,2103807459595387724,,,35.79,541312140,\r\n";
        let path = dir.path().join("x.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).unwrap();
        gz.finish().unwrap();
        let rows: Vec<_> = CsvEventReader::open(&path).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        let second = rows[1].event.as_ref().unwrap();
        assert_eq!(second.user_session, None);
        assert_eq!(second.brand, None);
        let e = validate(second, &Rules::default()).unwrap();
        assert_eq!(e.price, 35.79);
    }

    #[test]
    fn a_wrong_header_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, "time,type\n1,2\n").unwrap();
        let err = CsvEventReader::open(&path).err().unwrap().to_string();
        assert!(err.contains("bad.csv: line 1: header"), "{err}");
    }
}
