//! Running programs: `run` and `Popen` (to be written).
