//! Schema upgrades, in order. Each step takes a database at version `from` to `from + 1` and
//! records the new version in the same run, so an interrupted upgrade restarts from the last
//! finished step. A version with no step here cannot be upgraded: the operator reindexes.
//!
//! (This file is compiled into the `sextant` library as `store::migrate`.)

use super::{Store, StoreError, SCHEMA_VERSION};

/// One upgrade step: the version it starts from and what it does.
pub struct Step {
    pub from: u32,
    pub describe: &'static str,
    pub run: fn(&Store) -> Result<(), StoreError>,
}

/// Every step, oldest first. Schema 1 is the first released layout.
pub const STEPS: &[Step] = &[];

/// Brings a database at `version` up to [`SCHEMA_VERSION`].
pub fn upgrade(store: &Store, mut version: u32) -> Result<(), StoreError> {
    upgrade_with(store, &mut version, STEPS, SCHEMA_VERSION)
}

pub(crate) fn upgrade_with(
    store: &Store,
    version: &mut u32,
    steps: &[Step],
    target: u32,
) -> Result<(), StoreError> {
    while *version < target {
        let step =
            steps
                .iter()
                .find(|s| s.from == *version)
                .ok_or_else(|| StoreError::NoUpgrade {
                    dir: store.dir.clone(),
                    found: *version,
                    supported: target,
                })?;
        tracing::info!(
            "upgrading the database from schema {} to {}: {}",
            step.from,
            step.from + 1,
            step.describe
        );
        (step.run)(store)?;
        *version += 1;
        store.set_schema_version(*version)?;
    }
    Ok(())
}
