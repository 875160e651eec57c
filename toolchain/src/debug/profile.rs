//! `run --profile`: the kernel's profile records ([`kiln_abi::record::Profile`], stacks it
//! unwound and counted) symbolized and folded (`main;handle;parse 42`, root first), which
//! the `inferno` crate draws as a flame graph. `run --profile-kernel`: the kernel's own
//! stacks, sampled from outside by [`crate::qemu::kprof`], symbolized from the kernel ELF
//! and folded the same way ([`kernel_folded`]).

use kiln_abi::record::{Place, Record};
use std::collections::BTreeMap;

/// Folded stacks: `root;...;leaf` to the samples that found it.
pub type Folded = BTreeMap<String, u64>;

/// The folded stacks of the profile records in `records`, for `program` (an ELF) loaded
/// at `bias`. A system call is the leaf `[kernel] NAME`, an idle CPU `[idle]`. After an
/// `Exec` record (the program ran `execve`) the samples are the new program's: `file`
/// gives its bytes from its path (`None`: addresses only).
pub fn folded(
    program: &[u8],
    bias: u64,
    records: &[u8],
    file: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Folded {
    let records = kiln_abi::record::parse_all(records);
    let execs: Vec<(Vec<u8>, u64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Exec(e) => Some((
                file(&String::from_utf8_lossy(&e.path)).unwrap_or_default(),
                e.load_bias,
            )),
            _ => None,
        })
        .collect();
    let mut programs = vec![super::crash::Symbolizer::new(program, bias)];
    programs.extend(
        execs
            .iter()
            .map(|(bytes, bias)| super::crash::Symbolizer::new(bytes, *bias)),
    );
    let mut current = 0;
    let mut names: BTreeMap<(usize, u64, bool), Vec<String>> = BTreeMap::new();
    let mut stacks = Folded::new();
    for r in records {
        let p = match r {
            Record::Profile(p) => p,
            Record::Exec(_) => {
                current += 1;
                continue;
            }
            _ => continue,
        };
        let sym = &programs[current];
        for s in p.stacks {
            let mut frames: Vec<String> = Vec::new();
            for (i, &pc) in s.pcs.iter().enumerate() {
                // Return addresses (all but the first) point after their call.
                let call = i > 0;
                let named = names
                    .entry((current, pc, call))
                    .or_insert_with(|| frame_names(sym, pc, call));
                frames.extend(named.iter().cloned());
            }
            frames.reverse();
            match s.place {
                Place::User => {}
                Place::Syscall(nr) => frames.push(format!(
                    "[kernel] {}",
                    kiln_abi::sysno::name(u64::from(nr))
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("syscall {nr}"))
                )),
                Place::Idle => frames.push("[idle]".to_string()),
            }
            *stacks.entry(frames.join(";")).or_insert(0) += u64::from(s.count);
        }
    }
    stacks
}

/// The names of the frames at `pc` (several when functions were inlined there), innermost
/// first, as the stack is; the address when nothing names it. `call`: `pc` is a return
/// address.
fn frame_names(sym: &super::crash::Symbolizer<'_>, pc: u64, call: bool) -> Vec<String> {
    let fs = sym.frames(pc, call);
    if fs.is_empty() {
        return vec![format!("{pc:#x}")];
    }
    fs.into_iter()
        .map(|f| {
            f.function
                .map(|n| function_only(&n).replace(';', ":"))
                .unwrap_or_else(|| format!("{pc:#x}"))
        })
        .collect()
}

/// The folded stacks of the kernel profiler's `samples`, named from `kernel` (the kernel
/// ELF the image was linked with; addresses when it is empty or not an ELF). Root first,
/// as [`folded`]; user-mode samples are one `[user]` frame, ring 0 outside the kernel
/// `[firmware]`, and a stack cut short starts with `[truncated]`.
pub fn kernel_folded(kernel: &[u8], samples: &crate::qemu::kprof::Samples) -> Folded {
    let sym = super::crash::Symbolizer::for_kernel(kernel);
    let mut names: BTreeMap<(u64, bool), Vec<String>> = BTreeMap::new();
    let mut stacks = Folded::new();
    for (pcs, &n) in &samples.kernel {
        let mut frames: Vec<String> = Vec::new();
        for (i, &pc) in pcs.iter().enumerate() {
            // The first is where the CPU was; the others are return addresses.
            let call = i > 0;
            if call && pc == crate::qemu::kprof::TRUNCATED {
                frames.push("[truncated]".to_string());
                continue;
            }
            let named = names
                .entry((pc, call))
                .or_insert_with(|| frame_names(&sym, pc, call));
            frames.extend(named.iter().cloned());
        }
        frames.reverse();
        *stacks.entry(frames.join(";")).or_insert(0) += n;
    }
    for (frame, n) in [("[user]", samples.user), ("[firmware]", samples.firmware)] {
        if n > 0 {
            *stacks.entry(frame.to_string()).or_insert(0) += n;
        }
    }
    stacks
}

/// `name` without the `+0x1f` offset that symbol-table names carry: a profile counts
/// functions, not instructions.
fn function_only(name: &str) -> &str {
    match name.rsplit_once("+0x") {
        Some((f, off)) if !f.is_empty() && off.bytes().all(|b| b.is_ascii_hexdigit()) => f,
        _ => name,
    }
}

/// The folded stacks as text, one `stack count` line each.
pub fn folded_text(stacks: &Folded) -> String {
    stacks.iter().map(|(s, n)| format!("{s} {n}\n")).collect()
}

/// A flame graph (SVG) of `stacks`.
pub fn flame_graph(stacks: &Folded, title: &str) -> anyhow::Result<Vec<u8>> {
    let text = folded_text(stacks);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "samples".to_string();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, text.lines(), &mut svg)
        .map_err(|e| anyhow::anyhow!("could not draw the flame graph: {e}"))?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_abi::record::{Profile, ProfileStack};

    #[test]
    fn stacks_fold_root_first_with_kernel_leaves() {
        let stacks = [
            ProfileStack {
                count: 5,
                place: Place::User,
                pcs: vec![0x40_1000, 0x40_2000],
            },
            ProfileStack {
                count: 2,
                place: Place::Syscall(1),
                pcs: vec![0x40_3000],
            },
            ProfileStack {
                count: 3,
                place: Place::Idle,
                pcs: vec![],
            },
        ];
        let mut records = Profile::encode_stacks(1_000_000, &stacks[..2]);
        records.extend(Profile::encode_stacks(1_000_000, &stacks[2..]));
        records.extend(Profile::encode_stacks(1_000_000, &stacks[2..]));
        let folded = folded(b"not an elf", 0, &records, &|_: &str| None);
        assert_eq!(
            folded_text(&folded),
            "0x402000;0x401000 5\n0x403000;[kernel] write 2\n[idle] 6\n"
        );
        let svg = flame_graph(&folded, "t").unwrap();
        assert_eq!(function_only("burn+0x19"), "burn");
        assert_eq!(function_only("a::<b+0x1>::c"), "a::<b+0x1>::c");
        assert!(String::from_utf8_lossy(&svg).contains("<svg"));
    }

    #[test]
    fn samples_after_an_exec_are_the_new_programs() {
        // The "new program" is this test binary: an address of one of its functions is
        // named after the Exec record and not before it.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = goblin::elf::Elf::parse(&me).unwrap();
        let sym = elf
            .syms
            .iter()
            .find(|s| {
                s.is_function()
                    && elf
                        .strtab
                        .get_at(s.st_name)
                        .is_some_and(|n| n.contains("folded_text"))
            })
            .expect("a symbol to look up");
        let pc = sym.st_value + 1;
        let stack = [ProfileStack {
            count: 1,
            place: Place::User,
            pcs: vec![pc],
        }];
        let mut records = Profile::encode_stacks(1_000_000, &stack);
        records.extend(
            kiln_abi::record::Exec {
                load_bias: 0,
                path: b"/bin/new".to_vec(),
            }
            .encode(),
        );
        records.extend(Profile::encode_stacks(1_000_000, &stack));
        let asked = std::cell::RefCell::new(Vec::new());
        let file = |path: &str| {
            asked.borrow_mut().push(path.to_string());
            Some(me.clone())
        };
        let text = folded_text(&folded(b"not an elf", 0, &records, &file));
        assert_eq!(asked.borrow().as_slice(), ["/bin/new"]);
        assert!(text.contains(&format!("{pc:#x} 1\n")), "{text}");
        assert!(text.contains("folded_text"), "{text}");
    }

    #[test]
    fn kernel_stacks_fold_root_first_with_user_and_firmware_samples() {
        let mut samples = crate::qemu::kprof::Samples {
            user: 7,
            firmware: 1,
            ..Default::default()
        };
        samples
            .kernel
            .insert(vec![0x10_3000, 0x10_2000, 0x10_1000], 4);
        samples.kernel.insert(vec![0x10_4000], 2);
        samples.kernel.insert(vec![0x10_5000, 0x10_6000, 0], 1);
        let folded = kernel_folded(b"", &samples);
        assert_eq!(
            folded_text(&folded),
            "0x101000;0x102000;0x103000 4\n0x104000 2\n[firmware] 1\n[truncated];0x106000;0x105000 1\n[user] 7\n"
        );
    }
}
