//! Multi-row statements: one round trip carries many rows, and a handful of prepared statements
//! (one per power-of-two row count) cover batches of any size.

use super::template::Sql;

/// Multi-row statements come in power-of-two sizes up to this.
pub const MAX_ROWS_PER_STATEMENT: usize = 64;

/// One statement per power-of-two row count (1, 2, 4, .. MAX_ROWS_PER_STATEMENT).
pub struct MultiRow {
    by_size: Vec<Sql>,
}

impl MultiRow {
    /// `build(rows)` renders the statement for that many rows.
    pub fn new(build: impl Fn(usize) -> Sql) -> MultiRow {
        let mut by_size = Vec::new();
        let mut size = 1;
        while size <= MAX_ROWS_PER_STATEMENT {
            by_size.push(build(size));
            size *= 2;
        }
        MultiRow { by_size }
    }

    /// The statement of the smallest size that holds `rows` rows (at most
    /// [`MAX_ROWS_PER_STATEMENT`]), and that size: a caller pads its rows up to it.
    pub fn covering(&self, rows: usize) -> (&Sql, usize) {
        let size = rows.clamp(1, MAX_ROWS_PER_STATEMENT).next_power_of_two();
        (&self.by_size[size.trailing_zeros() as usize], size)
    }

    /// Splits `rows` into chunks with a prepared statement each.
    pub fn chunks<'r, T>(&self, rows: &'r [T]) -> Vec<(&Sql, &'r [T])> {
        let mut chunks = Vec::new();
        let mut rest = rows;
        while !rest.is_empty() {
            let size = if rest.len() >= MAX_ROWS_PER_STATEMENT {
                MAX_ROWS_PER_STATEMENT
            } else {
                1 << rest.len().ilog2()
            };
            let (chunk, tail) = rest.split_at(size);
            chunks.push((&self.by_size[size.trailing_zeros() as usize], chunk));
            rest = tail;
        }
        chunks
    }
}

/// `rows` rows of `per_row` placeholders, `(?, ?), (?, ?)`; `placeholder(n)` writes the `n`th
/// (from 1).
pub fn placeholders(rows: usize, per_row: usize, placeholder: &dyn Fn(usize) -> String) -> String {
    (0..rows)
        .map(|row| format!("({})", list(row * per_row + 1, per_row, placeholder)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `count` placeholders from the `first`th on, `?, ?, ?`.
pub fn list(first: usize, count: usize, placeholder: &dyn Fn(usize) -> String) -> String {
    (first..first + count)
        .map(placeholder)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sql::template::Placeholders;

    #[test]
    fn batches_split_into_power_of_two_statements() {
        let statements = MultiRow::new(|rows| {
            Sql::numbered(Placeholders::Dollar, rows, |p| placeholders(rows, 1, p))
        });
        let rows: Vec<u32> = (0..71).collect();
        let sizes: Vec<usize> = statements
            .chunks(&rows)
            .iter()
            .map(|(sql, chunk)| {
                assert_eq!(sql.binds.len(), chunk.len());
                chunk.len()
            })
            .collect();
        assert_eq!(sizes, [64, 4, 2, 1]);
        let covering: Vec<usize> = [1, 2, 3, 5, 33, 64]
            .iter()
            .map(|rows| statements.covering(*rows).1)
            .collect();
        assert_eq!(covering, [1, 2, 4, 8, 64, 64]);
    }
}
