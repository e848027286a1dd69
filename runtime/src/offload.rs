//! Helper thread pool for calls no hook can make non-blocking (DNS today). Being written.
