//! paxoskv harness: Jepsen-style testing of a real cluster.
