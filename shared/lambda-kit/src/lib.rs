//! Shared plumbing of the functions.
