//! System-call dispatch: Linux numbers in, kernel services out.
//!
//! Each family module exposes `handle(process, machine, nr, args) -> Option<Outcome>` and
//! answers `None` for numbers it does not own. Whatever no family owns returns `-ENOSYS`
//! and is logged once by name.

pub mod fs;
pub mod mm;
pub mod proc;
pub mod signal;
pub mod time;
