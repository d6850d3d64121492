//! Sizes with units, as thin-provisioning-tools' `thin_metadata_size` takes and
//! prints them: a number followed by a unit (`64k`, `1t`, `1TiB`, `1tebibyte`,
//! `128` = sectors by default), lower-case letters for binary multiples and
//! upper-case ones for decimal multiples.

use std::fmt;
use std::str::FromStr;

/// A unit of size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// 1 byte.
    Byte,
    /// 512 bytes.
    Sector,
    /// 2^10 bytes.
    Kibibyte,
    /// 2^20 bytes.
    Mebibyte,
    /// 2^30 bytes.
    Gibibyte,
    /// 2^40 bytes.
    Tebibyte,
    /// 2^50 bytes.
    Pebibyte,
    /// 2^60 bytes.
    Exbibyte,
    /// 10^3 bytes.
    Kilobyte,
    /// 10^6 bytes.
    Megabyte,
    /// 10^9 bytes.
    Gigabyte,
    /// 10^12 bytes.
    Terabyte,
    /// 10^15 bytes.
    Petabyte,
    /// 10^18 bytes.
    Exabyte,
}

/// Every unit: its letter, short name, long name and size in bytes.
const UNITS: &[(Unit, &str, &str, &str, u64)] = &[
    (Unit::Byte, "b", "B", "byte", 1),
    (Unit::Sector, "s", "S", "sector", 512),
    (Unit::Kibibyte, "k", "KiB", "kibibyte", 1 << 10),
    (Unit::Mebibyte, "m", "MiB", "mebibyte", 1 << 20),
    (Unit::Gibibyte, "g", "GiB", "gibibyte", 1 << 30),
    (Unit::Tebibyte, "t", "TiB", "tebibyte", 1 << 40),
    (Unit::Pebibyte, "p", "PiB", "pebibyte", 1 << 50),
    (Unit::Exbibyte, "e", "EiB", "exbibyte", 1 << 60),
    (Unit::Kilobyte, "K", "kB", "kilobyte", 1_000),
    (Unit::Megabyte, "M", "MB", "megabyte", 1_000_000),
    (Unit::Gigabyte, "G", "GB", "gigabyte", 1_000_000_000),
    (Unit::Terabyte, "T", "TB", "terabyte", 1_000_000_000_000),
    (Unit::Petabyte, "P", "PB", "petabyte", 1_000_000_000_000_000),
    (
        Unit::Exabyte,
        "E",
        "EB",
        "exabyte",
        1_000_000_000_000_000_000,
    ),
];

impl Unit {
    fn row(self) -> &'static (Unit, &'static str, &'static str, &'static str, u64) {
        UNITS
            .iter()
            .find(|r| r.0 == self)
            .expect("every unit has a row")
    }

    /// Bytes in one unit.
    pub fn bytes(self) -> u64 {
        self.row().4
    }

    /// The one-letter form (`k`, `K`, `s`).
    pub fn letter(self) -> &'static str {
        self.row().1
    }

    /// The long name, singular (`kibibyte`).
    pub fn name(self) -> &'static str {
        self.row().3
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The accepted spellings, for messages and the manual.
pub const UNIT_HELP: &str =
    "b, s, k, m, g, t, p, e (binary: KiB, MiB, ...), K, M, G, T, P, E (decimal: kB, MB, ...), or the long names (sector, kibibyte, megabyte, ...)";

impl FromStr for Unit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let singular = s.strip_suffix('s').filter(|t| t.len() > 1).unwrap_or(s);
        UNITS
            .iter()
            .find(|(_, letter, short, long, _)| {
                s == *letter
                    || s == *short
                    || singular.eq_ignore_ascii_case(long)
                    || (s.len() > 1 && s.eq_ignore_ascii_case(short))
            })
            .map(|r| r.0)
            .ok_or_else(|| format!("unknown unit '{s}' (units: {UNIT_HELP})"))
    }
}

/// Parses `NUMBER[UNIT]` into bytes; a bare number is in `default` units.
pub fn parse_size(s: &str, default: Unit) -> Result<u64, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("'{s}' is not a size: it must start with a number"));
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("'{s}' is too large"))?;
    let unit = match &s[digits..] {
        "" => default,
        u => u.parse()?,
    };
    n.checked_mul(unit.bytes())
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// `bytes` in `unit`: a whole number when it divides, else rounded up to two
/// decimals (a size needed must never be printed smaller than it is).
pub fn format_in(bytes: u64, unit: Unit) -> String {
    let u = unit.bytes();
    if bytes.is_multiple_of(u) {
        return (bytes / u).to_string();
    }
    let hundredths = (bytes as u128 * 100).div_ceil(u as u128);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_thin_metadata_size_takes_them() {
        assert_eq!(parse_size("128", Unit::Sector), Ok(65536));
        assert_eq!(parse_size("64k", Unit::Sector), Ok(65536));
        assert_eq!(parse_size("1t", Unit::Sector), Ok(1 << 40));
        assert_eq!(parse_size("1TiB", Unit::Sector), Ok(1 << 40));
        assert_eq!(parse_size("1T", Unit::Sector), Ok(1_000_000_000_000));
        assert_eq!(parse_size("2tebibytes", Unit::Sector), Ok(2 << 40));
        assert_eq!(parse_size("3sectors", Unit::Byte), Ok(1536));
        assert_eq!(parse_size("4096b", Unit::Sector), Ok(4096));
        assert_eq!(parse_size("1kB", Unit::Sector), Ok(1000));
        assert!(parse_size("", Unit::Sector).is_err());
        assert!(parse_size("k", Unit::Sector).is_err());
        assert!(parse_size("1x", Unit::Sector)
            .unwrap_err()
            .contains("unknown unit 'x'"));
        assert!(parse_size("-1", Unit::Sector).is_err());
        assert!(parse_size("20e", Unit::Sector)
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("99999999999999999999", Unit::Byte).is_err());
    }

    #[test]
    fn figures_are_rounded_up() {
        assert_eq!(format_in(4096, Unit::Sector), "8");
        assert_eq!(format_in(4096, Unit::Kibibyte), "4");
        assert_eq!(format_in(4096, Unit::Kilobyte), "4.10");
        assert_eq!(format_in(1 << 20, Unit::Gibibyte), "0.01");
        assert_eq!(format_in(3 << 30, Unit::Gibibyte), "3");
        assert_eq!(format_in((3 << 30) + 1, Unit::Gibibyte), "3.01");
        assert_eq!(Unit::Tebibyte.to_string(), "tebibyte");
        assert_eq!("MiB".parse::<Unit>(), Ok(Unit::Mebibyte));
        assert_eq!("sector".parse::<Unit>(), Ok(Unit::Sector));
        assert_eq!("M".parse::<Unit>(), Ok(Unit::Megabyte));
        assert_eq!("m".parse::<Unit>(), Ok(Unit::Mebibyte));
    }
}
