//! The CSV reader (`cartflow produce --input`): a file's bytes, header and
//! rows, each row validated as the validator does.
#![no_main]

use cartflow_core::{Rules, validate};
use cartflow_sources::CsvEventReader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let input = Box::new(std::io::Cursor::new(data.to_vec()));
    let Ok(mut reader) = CsvEventReader::from_reader("fuzz.csv".into(), input) else {
        return;
    };
    let rules = Rules::default();
    while let Some(row) = reader.next_row() {
        // A row the csv crate cannot read ends the file, as in `produce`.
        let Ok(row) = row else { break };
        if let Ok(raw) = &row.event {
            let _ = validate(raw, &rules);
        }
    }
});
