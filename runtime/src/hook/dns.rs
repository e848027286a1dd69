//! `getaddrinfo` offloaded to helper threads. Being written.
