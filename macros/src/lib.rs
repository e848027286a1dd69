//! openco procedural macros (being written).
