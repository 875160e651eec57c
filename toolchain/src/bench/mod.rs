//! Benchmarks: `bench boot` ([`boot`]) and `bench http` ([`http`]). Each writes its own
//! section of `BENCHMARKS.md` ([`markdown`]) and leaves the others as they are.

pub mod boot;
pub mod http;
pub mod markdown;

pub use boot::{boot, format_report, median, write_markdown, Report, Row};
