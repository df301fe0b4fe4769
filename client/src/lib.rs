//! paxoskv client library.
