//! Process information for any pid (to be written).
