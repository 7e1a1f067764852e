//! Rebuilding the live-key counters from the live keys, read in key order: the prefixes of
//! consecutive keys nest, so a stack of the prefixes still open counts them in one pass with
//! memory for one key's prefixes, however many keys and prefixes there are.

use bytes::Bytes;

use crate::backend::counted_prefixes;

/// Live keys read per query while rebuilding.
pub const KEYS_PER_PAGE: i64 = 10_000;

#[derive(Default)]
pub struct PrefixCounter {
    /// The counted prefixes of the last key, shortest first, with the keys seen under each.
    open: Vec<(Vec<u8>, i64)>,
    /// Prefixes no later key can fall under, with their final counts.
    closed: Vec<(Bytes, i64)>,
}

impl PrefixCounter {
    /// Counts `key`, which sorts after every key added before.
    pub fn add(&mut self, key: &[u8]) {
        while let Some((prefix, _)) = self.open.last() {
            if key.starts_with(prefix) {
                break;
            }
            self.close_last();
        }
        for (_, live) in &mut self.open {
            *live += 1;
        }
        let known = self.open.last().map_or(0, |(prefix, _)| prefix.len());
        for prefix in counted_prefixes(key).filter(|p| p.len() > known) {
            self.open.push((prefix.to_vec(), 1));
        }
    }

    fn close_last(&mut self) {
        if let Some((prefix, live)) = self.open.pop() {
            self.closed.push((prefix.into(), live));
        }
    }

    /// The prefixes closed since the last call.
    pub fn closed(&mut self) -> Vec<(Bytes, i64)> {
        std::mem::take(&mut self.closed)
    }

    /// Every prefix not yet returned: no more keys come.
    pub fn finish(mut self) -> Vec<(Bytes, i64)> {
        while !self.open.is_empty() {
            self.close_last();
        }
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_prefixes_count_in_one_pass() {
        let mut keys = vec![
            "/a/x/1", "/a/x/2", "/a/y/", "/a/y/1", "/ab", "/b/1", "c", "d/e/",
        ];
        keys.sort();
        let mut counter = PrefixCounter::default();
        let mut counted = Vec::new();
        for key in &keys {
            counter.add(key.as_bytes());
            counted.extend(counter.closed());
        }
        counted.extend(counter.finish());
        counted.sort();
        let expected: Vec<(Bytes, i64)> = [
            ("/", 6),
            ("/a/", 4),
            ("/a/x/", 2),
            ("/a/y/", 2),
            ("/b/", 1),
            ("d/", 1),
            ("d/e/", 1),
        ]
        .into_iter()
        .map(|(p, n)| (Bytes::from(p), n))
        .collect();
        assert_eq!(counted, expected);
    }
}
