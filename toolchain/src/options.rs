//! Parsing of the small values users type: `--file SRC:DEST`, `--env K=V`, `--memory SIZE`.

use std::path::PathBuf;

/// An option value that could not be parsed; the message says what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadOption(pub String);

/// One `--file SRC:DEST`: a host file or directory placed at `dest` in the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Host path of the file or directory.
    pub src: PathBuf,
    /// Absolute, normalised destination (`/etc/app.conf`).
    pub dest: String,
}

/// Parses `SRC:DEST`. DEST is split at the last `:` and must be absolute without `..`.
pub fn parse_file_spec(s: &str) -> Result<FileSpec, BadOption> {
    let (src, dest) = s.rsplit_once(':').ok_or_else(|| {
        BadOption(format!(
            "--file `{s}`: expected SRC:DEST, for example --file config.toml:/etc/app.toml"
        ))
    })?;
    if src.is_empty() {
        return Err(BadOption(format!(
            "--file `{s}`: SRC is empty; give a host path before the `:`"
        )));
    }
    let dest = normalize_dest(dest).map_err(|why| BadOption(format!("--file `{s}`: {why}")))?;
    Ok(FileSpec {
        src: PathBuf::from(src),
        dest,
    })
}

/// Normalises an absolute guest path: collapses `//` and `.`, refuses `..` and relative paths.
pub fn normalize_dest(dest: &str) -> Result<String, String> {
    if !dest.starts_with('/') {
        return Err(format!(
            "DEST `{dest}` must be an absolute path inside the image, like /etc/{}",
            dest.trim_start_matches("./")
        ));
    }
    let mut parts = Vec::new();
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("DEST `{dest}` must not contain `..`")),
            p if p.contains('\0') => return Err("DEST contains a NUL byte".into()),
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Parses `K=V` (the value may be empty or contain `=`; the name may not be empty or contain `=`).
pub fn parse_env(s: &str) -> Result<(String, String), BadOption> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        Some(("", _)) => Err(BadOption(format!(
            "environment variable `{s}` has an empty name; use NAME=VALUE"
        ))),
        Some(_) => Err(BadOption(format!(
            "environment variable `{s}` contains a NUL byte"
        ))),
        None => Err(BadOption(format!(
            "environment variable `{s}` has no value; use NAME=VALUE (NAME= for empty)"
        ))),
    }
}

/// Smallest guest memory Kiln accepts, in MiB.
pub const MIN_MEMORY_MIB: u64 = 2;
/// Largest guest memory Kiln accepts, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

/// Parses a memory size into MiB: `16M`, `1G`, `512` (MiB), `2048K`, `16MiB`, `1g`.
/// Parses a core-size limit (`--core-limit`): `0`, `512K`, `64M`, `1G`, or a number of MiB;
/// returns bytes, at most 4 GiB (what one record carries).
pub fn parse_core_limit(s: &str) -> Result<u64, BadOption> {
    let bad = |why: &str| {
        BadOption(format!(
            "--core-limit `{s}`: {why}; use a size like 512K, 64M or 1G (a plain number means MiB)"
        ))
    };
    let t = s.trim().to_ascii_lowercase();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let n: u64 = num.parse().map_err(|_| bad("not a number"))?;
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let shift = match unit {
        "k" => 10,
        "" | "m" => 20,
        "g" => 30,
        _ => return Err(bad(&format!("unknown unit `{unit}`"))),
    };
    n.checked_shl(shift)
        .filter(|b| b >> shift == n && *b <= 4 << 30)
        .ok_or_else(|| bad("more than 4G"))
}

/// Parses a memory size (`--memory`) in MiB.
pub fn parse_memory(s: &str) -> Result<u64, BadOption> {
    let bad = |why: &str| {
        BadOption(format!(
            "--memory `{s}`: {why}; use a size like 16M, 512M or 1G (a plain number means MiB)"
        ))
    };
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(bad("no number"));
    }
    let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mib = match unit {
        "" | "m" => Some(n),
        "k" => n.is_multiple_of(1024).then_some(n / 1024),
        "g" => n.checked_mul(1024),
        "t" => n.checked_mul(1024 * 1024),
        _ => return Err(bad(&format!("unknown unit `{unit}`"))),
    }
    .ok_or_else(|| bad("not a whole number of MiB"))?;
    if mib < MIN_MEMORY_MIB {
        return Err(bad(&format!("at least {MIN_MEMORY_MIB}M is needed")));
    }
    if mib > MAX_MEMORY_MIB {
        return Err(bad("more than 1T"));
    }
    Ok(mib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_limits() {
        assert_eq!(parse_core_limit("0").unwrap(), 0);
        assert_eq!(parse_core_limit("512K").unwrap(), 512 << 10);
        assert_eq!(parse_core_limit("64").unwrap(), 64 << 20);
        assert_eq!(parse_core_limit("1g").unwrap(), 1 << 30);
        assert!(parse_core_limit("5G").is_err());
        assert!(parse_core_limit("lots")
            .unwrap_err()
            .0
            .contains("--core-limit"));
        assert!(parse_core_limit("99999999999999999999G").is_err());
    }

    #[test]
    fn file_specs() {
        let f = parse_file_spec("a/b.txt:/etc//x/./y").unwrap();
        assert_eq!(f.src, PathBuf::from("a/b.txt"));
        assert_eq!(f.dest, "/etc/x/y");
        let f = parse_file_spec("c:/dir:/data").unwrap();
        assert_eq!(f.src, PathBuf::from("c:/dir"));
        assert_eq!(f.dest, "/data");
        assert_eq!(parse_file_spec("x:/").unwrap().dest, "/");
    }

    #[test]
    fn bad_file_specs() {
        for bad in [
            "nocolon",
            ":/etc/x",
            "a:etc/x",
            "a:",
            "a:/etc/../x",
            "a:/..",
        ] {
            let e = parse_file_spec(bad).unwrap_err();
            assert!(e.0.contains("--file"), "{bad}: {e}");
        }
        assert!(parse_file_spec("a:rel").unwrap_err().0.contains("absolute"));
        assert!(parse_file_spec("a:/x/../y").unwrap_err().0.contains(".."));
    }

    #[test]
    fn env_values() {
        assert_eq!(parse_env("A=1").unwrap(), ("A".into(), "1".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), "".into()));
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("A").unwrap_err().0.contains("NAME=VALUE"));
        assert!(parse_env("=x").unwrap_err().0.contains("empty name"));
        assert!(parse_env("A=\0").is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("16M").unwrap(), 16);
        assert_eq!(parse_memory("16m").unwrap(), 16);
        assert_eq!(parse_memory("16MiB").unwrap(), 16);
        assert_eq!(parse_memory("1G").unwrap(), 1024);
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert_eq!(parse_memory("4096K").unwrap(), 4);
        assert_eq!(parse_memory("1T").unwrap(), 1 << 20);
    }

    #[test]
    fn bad_memory_sizes() {
        for bad in [
            "",
            "M",
            "-1",
            "1.5G",
            "16X",
            "0",
            "1M",
            "1000K",
            "2T",
            "99999999999999999999G",
            "18446744073709551615G",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad:?} should fail");
        }
    }
}
