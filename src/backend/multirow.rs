//! Multi-row statements: one round trip carries many rows, and a handful of prepared statements
//! (one per power-of-two row count) cover batches of any size.

use std::sync::Arc;

/// Multi-row statements come in power-of-two sizes up to this, so a handful of prepared
/// statements cover any batch and one round trip carries many rows.
pub const MAX_ROWS_PER_STATEMENT: usize = 64;

/// One statement per power-of-two row count (1, 2, 4, .. MAX_ROWS_PER_STATEMENT).
pub struct MultiRow {
    by_size: Vec<Arc<str>>,
}

impl MultiRow {
    pub fn new(build: impl Fn(usize) -> String) -> MultiRow {
        let mut by_size = Vec::new();
        let mut size = 1;
        while size <= MAX_ROWS_PER_STATEMENT {
            by_size.push(build(size).into());
            size *= 2;
        }
        MultiRow { by_size }
    }

    /// Splits `rows` into chunks with a prepared statement each.
    pub fn chunks<'r, T>(&self, rows: &'r [T]) -> Vec<(Arc<str>, &'r [T])> {
        let mut chunks = Vec::new();
        let mut rest = rows;
        while !rest.is_empty() {
            let size = (1..=MAX_ROWS_PER_STATEMENT)
                .rev()
                .find(|s| s.is_power_of_two() && *s <= rest.len())
                .unwrap_or(1);
            let (chunk, tail) = rest.split_at(size);
            chunks.push((self.by_size[size.trailing_zeros() as usize].clone(), chunk));
            rest = tail;
        }
        chunks
    }
}

/// `rows` rows of `per_row` placeholders, `(?, ?), (?, ?)`; `placeholder(n)` writes the `n`th
/// (from 1).
pub fn placeholders(rows: usize, per_row: usize, placeholder: impl Fn(usize) -> String) -> String {
    (0..rows)
        .map(|row| {
            let fields: Vec<String> = (1..=per_row)
                .map(|i| placeholder(row * per_row + i))
                .collect();
            format!("({})", fields.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
