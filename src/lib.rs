//! Examples, integration tests and benchmarks of openco live in this package.
