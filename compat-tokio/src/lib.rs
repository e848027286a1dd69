//! tokio glue for openco (being written).
