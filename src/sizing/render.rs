//! The output of `clone_metadata_size` and `era_metadata_size`: the figure in a
//! unit, in the forms `thin_metadata_size` prints, and on request its parts.

use super::units::{format_in, Unit};
use super::{SizedFor, Sizing};
use crate::io::BLOCK_SIZE;

/// How the figure is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `132480 sectors`.
    Full,
    /// `132480`.
    Numeric,
    /// `132480s`: the unit's letter.
    Short,
    /// `132480sectors`: the unit's long name, no space (as thin_metadata_size).
    Long,
}

/// The lines to print for `sizing`: the figure, then with `verbose` each part in
/// metadata blocks and what the figure was computed for.
pub fn render(sizing: &Sizing, unit: Unit, form: Form, verbose: bool) -> String {
    let n = format_in(sizing.blocks * BLOCK_SIZE as u64, unit);
    let mut out = match form {
        Form::Full => format!("{n} {}s", unit.name()),
        Form::Numeric => n,
        Form::Short => format!("{n}{}", unit.letter()),
        Form::Long => format!("{n}{}s", unit.name()),
    };
    out.push('\n');
    if verbose {
        let what = match sizing.sized_for {
            SizedFor::Clone { nr_regions } => format!("{nr_regions} regions"),
            SizedFor::Era {
                nr_blocks,
                writesets,
            } => format!("{nr_blocks} blocks, {writesets} archived writesets"),
        };
        let width = sizing.blocks.to_string().len();
        out.push_str(&format!(
            "{:>width$}  metadata blocks of {BLOCK_SIZE} bytes for {what}:\n",
            sizing.blocks
        ));
        for t in &sizing.terms {
            out.push_str(&format!("{:>width$}  {}\n", t.blocks, t.what));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sizing::clone_metadata_blocks;

    #[test]
    fn forms() {
        let s = clone_metadata_blocks(1 << 28);
        assert_eq!(s.blocks, 16560);
        assert_eq!(
            render(&s, Unit::Sector, Form::Full, false),
            "132480 sectors\n"
        );
        assert_eq!(render(&s, Unit::Sector, Form::Numeric, false), "132480\n");
        assert_eq!(render(&s, Unit::Mebibyte, Form::Short, false), "64.69m\n");
        assert_eq!(
            render(&s, Unit::Kibibyte, Form::Long, false),
            "66240kibibytes\n"
        );
        let v = render(&s, Unit::Byte, Form::Numeric, true);
        let lines: Vec<&str> = v.lines().collect();
        assert_eq!(lines[0], "67829760");
        assert_eq!(
            lines[1],
            "16560  metadata blocks of 4096 bytes for 268435456 regions:"
        );
        let parts: u64 = lines[2..]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(parts, 16560);
    }
}
