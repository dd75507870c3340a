//! Printing: lines, tables and JSON on stdout, each write checked, so output to a closed pipe
//! (`pollhook events list | head -1`) ends the command quietly instead of panicking as
//! `println!` does.
//!
//! In: what a command prints. Out: bytes on stdout, or an `io::Error` that `main` recognises
//! as a closed pipe ([`closed_pipe`]) and turns into a quiet exit 0.

use std::io::{self, Write};

use comfy_table::{CellAlignment, Table, presets};
use serde::Serialize;

/// Prints one line on stdout, `?`-propagating a write error (like `println!` without the panic).
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}
pub(crate) use say;

/// Prints `value` as pretty JSON and a newline.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    writeln!(io::stdout().lock(), "{text}")?;
    Ok(())
}

/// Prints text as it is.
pub fn text(text: &str) -> anyhow::Result<()> {
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// A table without borders: a header row, then the rows, columns two spaces apart; the
/// columns in `right` (numbers) aligned right.
pub fn table<R: IntoIterator<Item = String>>(
    header: &[&str],
    right: &[usize],
    rows: impl IntoIterator<Item = R>,
) -> anyhow::Result<()> {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row.into_iter().collect::<Vec<_>>());
    }
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = io::stdout().lock();
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Whether `err` is a write to a closed pipe: the reader has all it wanted.
pub fn closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
