//! Benchmarks: `bench boot` ([`boot`]), `bench http` ([`http`]), `bench redis` ([`redis`]),
//! `bench smp` ([`smp`]) and `bench soak` ([`soak`]). Each writes its own section of `BENCHMARKS.md` ([`markdown`]) and leaves the
//! others as they are.

pub mod boot;
pub mod http;
pub mod load;
pub mod markdown;
pub mod redis;
pub mod smp;
pub mod soak;

pub use boot::{boot, format_report, median, write_markdown, Report, Row};

/// Builds the Kiln image of `examples/NAME` into `dir/NAME.elf`, saying so first.
pub fn build_example(
    layout: &crate::Layout,
    example: &str,
    dir: &std::path::Path,
) -> anyhow::Result<crate::image::BuiltImage> {
    crate::note!("building the Kiln image of examples/{example}");
    crate::image::build_image(
        layout,
        &crate::image::BuildRequest {
            source: crate::app::AppSource::Example(example.to_string()),
            rootfs_dir: None,
            files: vec![],
            libs: vec![],
            dynamic: false,
            env: vec![],
            args: vec![],
            output: Some(dir.join(format!("{example}.elf"))),
            net: crate::image::NetChoice::Auto,
            profiler: false,
            volumes: false,
        },
    )
}
