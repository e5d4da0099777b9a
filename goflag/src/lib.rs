//! Go flag parsing (being written)
