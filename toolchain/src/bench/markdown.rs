//! `BENCHMARKS.md` is made of `## ` sections, one per benchmark; each benchmark rewrites
//! only its own.

use crate::Layout;

/// The document's first lines when it does not exist yet.
const TITLE: &str = "# Benchmarks\n";

/// Returns `doc` with the section that starts with the line `heading` (a `## ` heading)
/// replaced by `heading` + `body`, up to the next `## ` heading; appended when missing.
pub fn replace_section(doc: &str, heading: &str, body: &str) -> String {
    let mut section = format!("{heading}\n\n{}", body.trim_end());
    section.push('\n');
    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| l.trim_end() == heading);
    let Some(start) = start else {
        let mut out = if doc.trim().is_empty() {
            TITLE.to_string()
        } else {
            doc.to_string()
        };
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&section);
        return out;
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |i| start + 1 + i);
    let mut out: String = lines[..start].concat();
    out.push_str(&section);
    if end < lines.len() {
        out.push('\n');
        out.push_str(&lines[end..].concat());
    }
    out
}

/// Rewrites one section of `BENCHMARKS.md` at the repository root.
///
/// Refused once a stop signal came: the benchmark's children were stopped mid-measurement,
/// so its figures are not results (and the command must not end as if it had finished).
pub fn write_section(layout: &Layout, heading: &str, body: &str) -> anyhow::Result<()> {
    if let Some(sig) = crate::qemu::signals::received() {
        anyhow::bail!(
            "stopped by {} during the benchmark: BENCHMARKS.md left as it was",
            crate::qemu::outcome::signal_name(sig)
        );
    }
    let path = layout.root.join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, replace_section(&doc, heading, body))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_its_section() {
        let doc = "# Benchmarks\n\nintro\n\n## Boot\n\nold boot\n\n## HTTP\n\nold http\n";
        let d = replace_section(doc, "## Boot", "new boot\n");
        assert_eq!(
            d,
            "# Benchmarks\n\nintro\n\n## Boot\n\nnew boot\n\n## HTTP\n\nold http\n"
        );
        let d = replace_section(&d, "## HTTP", "new http");
        assert_eq!(
            d,
            "# Benchmarks\n\nintro\n\n## Boot\n\nnew boot\n\n## HTTP\n\nnew http\n"
        );
    }

    #[test]
    fn appends_a_missing_section() {
        assert_eq!(
            replace_section("", "## Boot", "b"),
            "# Benchmarks\n\n## Boot\n\nb\n"
        );
        assert_eq!(
            replace_section("# Benchmarks\n\n## Boot\n\nb\n", "## HTTP", "h"),
            "# Benchmarks\n\n## Boot\n\nb\n\n## HTTP\n\nh\n"
        );
    }
}
