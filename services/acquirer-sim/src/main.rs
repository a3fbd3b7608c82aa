//! `acquirer-sim`: the host process comes with the simulator's server.

fn main() {}
