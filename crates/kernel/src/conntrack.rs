//! Conntrack table fill and statistics from `/proc`, for the calling thread's network namespace.
//!
//! `nf_conntrack_count` and `nf_conntrack_max` come from `/proc/sys/net/netfilter` (resolved per
//! opening thread), the per-CPU statistics from `/proc/thread-self/net/stat/nf_conntrack`; not
//! `/proc/net/…`, which follows the process's main thread and so shows the wrong namespace from a
//! thread that entered another one. Reading needs no capability.

use std::fs;
use std::io::ErrorKind;

use nfscope_ruleset::ConntrackStats;

use crate::error::KernelError;

const COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const STAT: &str = "/proc/thread-self/net/stat/nf_conntrack";

/// Reads the conntrack entry count, limit and per-CPU statistics (summed) of this thread's
/// network namespace. Fails with [`KernelError::Unavailable`] when conntrack is not loaded.
pub fn read_conntrack_stats() -> Result<ConntrackStats, KernelError> {
    let entries = read_u64(COUNT)?;
    let limit = read_u64(MAX)?;
    let stats = parse_stat_table(&read(STAT)?).map_err(|detail| KernelError::Format {
        what: STAT.to_owned(),
        detail,
    })?;
    Ok(ConntrackStats {
        entries,
        limit,
        stats,
    })
}

fn read(path: &str) -> Result<String, KernelError> {
    fs::read_to_string(path).map_err(|source| match source.kind() {
        ErrorKind::NotFound => KernelError::Unavailable("nf_conntrack".to_owned()),
        _ => KernelError::Io {
            what: path.to_owned(),
            source,
        },
    })
}

fn read_u64(path: &str) -> Result<u64, KernelError> {
    let text = read(path)?;
    text.trim().parse().map_err(|e| KernelError::Format {
        what: path.to_owned(),
        detail: format!("{e}: {:?}", text.trim()),
    })
}

/// Sums the per-CPU rows of `/proc/net/stat/nf_conntrack` column by column, in column order.
///
/// The first line names the columns; every further line is one CPU, in hex. `entries` is a
/// per-namespace total repeated on every row, not a per-CPU count, so it is left out (the table
/// fill comes from `nf_conntrack_count`).
pub fn parse_stat_table(text: &str) -> Result<Vec<(String, u64)>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty file")?
        .split_whitespace()
        .collect();
    let mut sums = vec![0u64; header.len()];
    for (row, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.len() != header.len() {
            return Err(format!(
                "row {}: {} values for {} columns",
                row + 1,
                cells.len(),
                header.len()
            ));
        }
        for (sum, cell) in sums.iter_mut().zip(&cells) {
            let value = u64::from_str_radix(cell, 16)
                .map_err(|e| format!("row {}: {cell:?}: {e}", row + 1))?;
            *sum = sum.saturating_add(value);
        }
    }
    let columns = header
        .iter()
        .zip(sums)
        .filter(|(name, _)| **name != "entries");
    Ok(columns
        .map(|(name, sum)| ((*name).to_owned(), sum))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_CPUS: &str = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000005  00000000 00000001 00000000 0000000a 00000000 00000000 00000000 00000002 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000003
00000005  00000001 00000010 00000000 00000001 00000000 00000000 00000000 00000001 00000000 ffffffff 00000000 00000000  00000000 00000000 00000000 00000000
";

    #[test]
    fn columns_are_summed_over_cpus_in_kernel_order_without_entries() {
        let stats = parse_stat_table(TWO_CPUS).unwrap();
        let names: Vec<&str> = stats.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"clashres"));
        assert_eq!(names.len(), 16);
        let get = |name: &str| stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(get("found"), Some(0x11));
        assert_eq!(get("invalid"), Some(11));
        assert_eq!(get("drop"), Some(0xffff_ffff));
        assert_eq!(get("search_restart"), Some(3));
        assert_eq!(get("entries"), None);
    }

    #[test]
    fn a_short_row_or_bad_hex_is_an_error_not_a_panic() {
        assert_eq!(
            parse_stat_table("a b\n1\n").unwrap_err(),
            "row 1: 1 values for 2 columns"
        );
        assert!(
            parse_stat_table("a b\n1 zz\n")
                .unwrap_err()
                .starts_with("row 1: \"zz\"")
        );
        assert_eq!(parse_stat_table("").unwrap_err(), "empty file");
    }
}
