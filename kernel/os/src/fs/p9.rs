//! 9P2000.L, the protocol of virtio-9p host directories: message encoding ([`wire`]) and a
//! blocking client ([`client`]) over a transport the machine provides.

pub mod client;
pub mod wire;

pub use client::{Attr, Client, DirEntry, SetAttr, StatFs, Transport};
pub use wire::Qid;

#[cfg(test)]
mod tests;
