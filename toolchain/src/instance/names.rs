//! Instance names: docker's rules for given names, docker's `adjective_surname` shape for
//! generated ones, and random instance ids.

use std::io::Read;

const ADJECTIVES: &[&str] = &[
    "admiring", "bold", "brave", "busy", "clever", "cool", "dazzling", "eager", "elastic", "epic",
    "focused", "gallant", "happy", "jolly", "keen", "kind", "loving", "lucid", "modest", "nifty",
    "peaceful", "quirky", "relaxed", "serene", "sharp", "stoic", "tender", "vibrant", "wizardly",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "allen",
    "backus",
    "bell",
    "cerf",
    "corbato",
    "dijkstra",
    "engelbart",
    "hamilton",
    "hopper",
    "joy",
    "kahn",
    "kay",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "mccarthy",
    "minsky",
    "neumann",
    "pike",
    "ritchie",
    "shannon",
    "sutherland",
    "tanenbaum",
    "thompson",
    "torvalds",
    "turing",
    "wilkes",
    "wirth",
    "wozniak",
];

/// Checks a `--name`: docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() >= 2 && name.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "invalid instance name `{name}`: use 2 to 128 of [a-zA-Z0-9_.-], starting with a letter or digit"
        ))
    }
}

/// Random bytes from the kernel (the time and pid if that fails).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
        }
    }
}

/// A new instance id: 64 hex digits.
pub fn new_id() -> String {
    (0..4).map(|_| format!("{:016x}", random_u64())).collect()
}

/// A generated name; the `attempt`-th try adds a number, as docker's does.
pub fn generate(attempt: u32) -> String {
    let r = random_u64();
    let adjective = ADJECTIVES[(r % ADJECTIVES.len() as u64) as usize];
    let surname = SURNAMES[((r >> 32) % SURNAMES.len() as u64) as usize];
    match attempt {
        0 => format!("{adjective}_{surname}"),
        n => format!("{adjective}_{surname}{}", n + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["web", "a1", "my_app.v2-x", "0x"] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "-x",
            "_x",
            "a/b",
            "a b",
            "..",
            "é1",
            &"x".repeat(129),
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        for attempt in 0..5 {
            let n = generate(attempt);
            assert!(validate(&n).is_ok() && n.contains('_'), "{n}");
        }
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert_ne!(id, new_id());
    }
}
