//! Deterministic Stream Load labels: derived from the target table and the Kafka offset
//! ranges of a batch, never from the clock, so a retried or replayed batch reuses its label
//! and StarRocks deduplicates it. Pure.
//!
//! Labels are at most 128 characters of `[-A-Za-z0-9_]` (StarRocks `^[-\w]{1,128}$`):
//! * one range, names of `[A-Za-z0-9_]` only, short enough:
//!   `firn-{table}-{topic}-p{partition}-{first}-{last}` (readable; `-` separates fields
//!   unambiguously because names contain none);
//! * otherwise `firn-{table prefix}-h{hash}`: a 64-bit FNV-1a hash of the exact table name and
//!   the sorted ranges (the prefix is for humans, the hash carries the identity).
//!
//! Bisection sub-batches append `-a` / `-b` ([`sub_label`]); a base label never ends in a
//! single letter, so sub-labels cannot collide with base labels.

use std::fmt::Write;

/// Longest label StarRocks accepts.
pub const MAX_LABEL_LEN: usize = 128;
/// Base labels stay this short so that 16 levels of bisection still fit.
const MAX_BASE_LEN: usize = 96;
/// Characters of the table name kept in a hashed label.
const TABLE_PREFIX_LEN: usize = 48;

/// Offsets `first..=last` of one topic partition in a batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OffsetRange {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

fn is_plain(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn sanitize(name: &str, max: usize) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// FNV-1a, 64 bit: stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        // Length-prefix each part so that ("ab","c") and ("a","bc") differ.
        for byte in (part.len() as u64).to_le_bytes().iter().chain(part.iter()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The label of a batch of `table` covering `ranges` (any order; sorted here).
pub fn batch_label(table: &str, ranges: &[OffsetRange]) -> String {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    sorted.dedup();
    if let [r] = sorted.as_slice()
        && is_plain(table)
        && is_plain(&r.topic)
        && r.partition >= 0
        && r.first >= 0
        && r.last >= 0
    {
        let readable = format!(
            "firn-{table}-{}-p{}-{}-{}",
            r.topic, r.partition, r.first, r.last
        );
        if readable.len() <= MAX_BASE_LEN {
            return readable;
        }
    }
    let mut encoded = Vec::new();
    for r in &sorted {
        encoded.push(r.topic.as_bytes().to_vec());
        let mut numbers = String::new();
        let _ = write!(numbers, "{}:{}:{}", r.partition, r.first, r.last);
        encoded.push(numbers.into_bytes());
    }
    let mut parts: Vec<&[u8]> = vec![b"firn-label-v1", table.as_bytes()];
    parts.extend(encoded.iter().map(Vec::as_slice));
    format!(
        "firn-{}-h{:016x}",
        sanitize(table, TABLE_PREFIX_LEN),
        fnv1a(&parts)
    )
}

/// Which half of a bisected batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    A,
    B,
}

/// The label of one half of a batch split for bisection: `{label}-a` / `{label}-b`, or a
/// hashed form when that would exceed 128 characters.
pub fn sub_label(label: &str, half: Half) -> String {
    let suffix = match half {
        Half::A => "a",
        Half::B => "b",
    };
    if label.len() + 2 <= MAX_LABEL_LEN {
        return format!("{label}-{suffix}");
    }
    format!(
        "firn-x{:016x}-{suffix}",
        fnv1a(&[b"firn-sub-v1", label.as_bytes()])
    )
}

/// Whether `label` matches `^[-\w]{1,128}$` (ASCII).
pub fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn range(topic: &str, partition: i32, first: i64, last: i64) -> OffsetRange {
        OffsetRange {
            topic: topic.into(),
            partition,
            first,
            last,
        }
    }

    #[test]
    fn single_range_is_readable() {
        assert_eq!(
            batch_label("orders_hot", &[range("cdc_orders", 3, 100, 199)]),
            "firn-orders_hot-cdc_orders-p3-100-199"
        );
    }

    #[test]
    fn names_with_separators_are_hashed_not_ambiguous() {
        // Readable forms of these two would both be `firn-a-b-c-p0-1-2`.
        let x = batch_label("a-b", &[range("c", 0, 1, 2)]);
        let y = batch_label("a", &[range("b-c", 0, 1, 2)]);
        assert_ne!(x, y);
        assert!(x.starts_with("firn-a_b-h"), "{x}");
        assert!(is_valid_label(&x) && is_valid_label(&y));
        // Sanitising must not merge distinct names either.
        assert_ne!(
            batch_label("a.b", &[range("t", 0, 1, 2)]),
            batch_label("a_b", &[range("t", 0, 1, 2)])
        );
    }

    #[test]
    fn multi_range_is_hashed_and_order_independent() {
        let a = range("t.orders", 0, 10, 20);
        let b = range("t.orders", 1, 5, 9);
        let l1 = batch_label("orders", &[a.clone(), b.clone()]);
        let l2 = batch_label("orders", &[b.clone(), a.clone()]);
        assert_eq!(l1, l2);
        assert!(l1.starts_with("firn-orders-h"));
        assert_ne!(l1, batch_label("orders", &[a, range("t.orders", 1, 5, 10)]));
    }

    #[test]
    fn long_names_fit() {
        let table = "t".repeat(200);
        let l = batch_label(&table, &[range("x", 0, 0, 1)]);
        assert!(l.len() <= MAX_BASE_LEN, "{}", l.len());
        assert!(is_valid_label(&l));
    }

    #[test]
    fn sub_labels() {
        assert_eq!(sub_label("firn-t-h1", Half::A), "firn-t-h1-a");
        assert_eq!(sub_label("firn-t-h1", Half::B), "firn-t-h1-b");
        let long = "x".repeat(127);
        let a = sub_label(&long, Half::A);
        assert!(is_valid_label(&a) && a.ends_with("-a"));
        assert_ne!(a, sub_label(&"x".repeat(126), Half::A));
        // 16 levels of bisection of a maximal base label still fit without hashing.
        let mut l = batch_label(&"t".repeat(200), &[range("x", 0, 0, 1)]);
        for _ in 0..16 {
            l = sub_label(&l, Half::B);
        }
        assert!(l.len() <= MAX_LABEL_LEN && l.ends_with("-b-b"));
    }

    proptest! {
        #[test]
        fn labels_are_valid_and_deterministic(
            table in "[ -~]{1,150}",
            ranges in proptest::collection::vec(
                ("[ -~]{1,40}", 0i32..64, 0i64..1_000_000, 0i64..1_000_000), 1..5)
        ) {
            let ranges: Vec<OffsetRange> = ranges
                .into_iter()
                .map(|(t, p, a, b)| range(&t, p, a.min(b), a.max(b)))
                .collect();
            let label = batch_label(&table, &ranges);
            prop_assert!(is_valid_label(&label), "{}", label);
            prop_assert_eq!(&label, &batch_label(&table, &ranges));
            let mut reversed = ranges.clone();
            reversed.reverse();
            prop_assert_eq!(&label, &batch_label(&table, &reversed));
            prop_assert!(is_valid_label(&sub_label(&label, Half::A)));
        }

        #[test]
        fn different_ranges_give_different_labels(
            first in 0i64..1000, len in 0i64..1000, shift in 1i64..1000
        ) {
            let a = batch_label("orders", &[range("cdc", 0, first, first + len)]);
            let b = batch_label("orders", &[range("cdc", 0, first + shift, first + shift + len)]);
            prop_assert_ne!(a, b);
        }
    }
}
