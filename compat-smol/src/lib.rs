//! smol glue for openco (being written).
