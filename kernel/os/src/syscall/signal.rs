//! Signal system calls.

/// Signal dispositions, mask and alternate stack of the process.
#[derive(Debug, Default)]
pub struct SignalState {}
