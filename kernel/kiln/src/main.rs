//! The Kiln kernel binary: wires the hardware layer to the Linux personality.
#![no_std]
#![no_main]

use kiln_hal::BootInfo;

#[unsafe(no_mangle)]
fn kiln_main(boot: BootInfo) -> ! {
    kiln_hal::serial::write(b"hello from kiln\n");
    let _ = boot;
    kiln_hal::exit::exit(7)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = info;
    kiln_hal::serial::write(b"kiln: kernel panic\n");
    kiln_hal::exit::exit(125)
}
