//! The integration tests: one binary, one module per concern.

/// Command-line behaviour: dispatch, options, error paths.
mod cli;
/// Damage: every live block zeroed, flipped, or made structurally wrong.
mod damage;
/// Golden outputs on kernel-made images.
mod golden;
/// Hostile input: random mutations with fixed-up checksums never panic.
mod hostile;
mod util;
