//! The output formats the tools offer beside their default one (`--format`), and
//! what the human-readable summaries share: sizes and percentages.

/// The output formats of the dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DumpFormat {
    /// The XML of the dump (the default; unchanged).
    #[default]
    Xml,
    /// The same content as a JSON document.
    Json,
    /// A summary for people: geometry, counts, percentages.
    Human,
}

/// The output formats of `era_invalidate`'s block list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ListFormat {
    /// The `<blocks>` XML (the default; unchanged).
    #[default]
    Xml,
    /// The same list as a JSON document.
    Json,
}

/// The output formats of the checkers' reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportFormat {
    /// One line per finding and a summary line, on standard error (the default).
    #[default]
    Text,
    /// One JSON document: the verdict, every finding, the figures.
    Json,
}

/// `n / total` as a percentage rounded down to two decimals (`"99.99"` until the
/// very last one is in), `"0.00"` of nothing.
pub fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        return "0.00".to_string();
    }
    let hundredths = (n as u128 * 10_000 / total as u128) as u64;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// A size in bytes in binary units, rounded down to two decimals: `64 MiB`,
/// `1.50 GiB`, `512 B`.
pub fn human_size(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut k = 0;
    while k + 1 < UNITS.len() && bytes >= 1u128 << (10 * (k + 1)) {
        k += 1;
    }
    let unit = 1u128 << (10 * k);
    let (whole, rest) = (bytes / unit, bytes % unit);
    if rest == 0 {
        format!("{whole} {}", UNITS[k])
    } else {
        format!("{whole}.{:02} {}", rest * 100 / unit, UNITS[k])
    }
}

/// `N sectors (SIZE)`.
pub fn sectors(n: u64) -> String {
    format!("{n} sectors ({})", human_size(n as u128 * 512))
}

/// Writes one line of a summary: the label padded to a column, then the value.
pub fn summary_line<W: std::io::Write + ?Sized>(
    w: &mut W,
    label: &str,
    value: impl std::fmt::Display,
) -> std::io::Result<()> {
    writeln!(w, "  {:<20}{value}", format!("{label}:"))
}

/// `USED of TOTAL blocks used (P%)` of the metadata device, from the space map.
pub fn metadata_space(used: u64, total: u64) -> String {
    format!(
        "{used} of {total} blocks used ({}%; {} of {})",
        percent(used, total),
        human_size(used as u128 * crate::io::BLOCK_SIZE as u128),
        human_size(total as u128 * crate::io::BLOCK_SIZE as u128)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_down_and_sizes_are_binary() {
        assert_eq!(percent(39, 2048), "1.90");
        assert_eq!(percent(2047, 2048), "99.95");
        assert_eq!(percent(999_999, 1_000_000), "99.99");
        assert_eq!(percent(5, 5), "100.00");
        assert_eq!(percent(0, 0), "0.00");
        assert_eq!(percent(u64::MAX, u64::MAX), "100.00");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(3 << 29), "1.50 GiB");
        assert_eq!(human_size(1025), "1.00 KiB");
        assert_eq!(sectors(131072), "131072 sectors (64 MiB)");
        assert_eq!(human_size(u64::MAX as u128 * 512), "8191.99 EiB");
    }
}
