//! Benchmarks: `bench boot` ([`boot`]), `bench http` ([`http`]) and `bench soak`
//! ([`soak`]). Each writes its own section of `BENCHMARKS.md` ([`markdown`]) and leaves the
//! others as they are.

pub mod boot;
pub mod http;
pub mod load;
pub mod markdown;
pub mod soak;

pub use boot::{boot, format_report, median, write_markdown, Report, Row};
