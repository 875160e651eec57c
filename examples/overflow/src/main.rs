//! Recurses until the main thread's stack overflows. Rust's runtime catches the fault on its
//! guard page (a SIGSEGV handler on an alternate stack), prints
//! `thread 'main' has overflowed its stack` and aborts: the run ends with 134.

#[allow(unconditional_recursion)] // the point: recurse until the stack overflows
fn depth(n: u64, pad: &mut [u8; 4096]) -> u64 {
    pad[0] = n as u8;
    let mut next = [0u8; 4096];
    next[1] = pad[0];
    std::hint::black_box(&mut next);
    1 + depth(n + 1, &mut next)
}

fn main() {
    println!("recursing");
    let mut pad = [0u8; 4096];
    println!("{}", depth(0, &mut pad));
}
