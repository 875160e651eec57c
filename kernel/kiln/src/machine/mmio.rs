//! virtio-mmio transports announced on the kernel command line.

/// A `virtio_mmio.device=SIZE@BASE:GSI` token: (base, size, gsi). SIZE takes the `K`/`M`
/// suffixes Linux accepts; numbers may be hex (`0x`) or decimal.
pub fn parse_mmio_token(token: &str) -> Option<(u64, u64, u8)> {
    let spec = token.strip_prefix("virtio_mmio.device=")?;
    let (size, rest) = spec.split_once('@')?;
    let (base, gsi) = rest.split_once(':')?;
    let gsi = gsi.split(':').next()?;
    let num = |s: &str| -> Option<u64> {
        let (digits, mul) = match s.as_bytes().last()? {
            b'K' | b'k' => (&s[..s.len() - 1], 1024),
            b'M' | b'm' => (&s[..s.len() - 1], 1024 * 1024),
            _ => (s, 1),
        };
        let v = match digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(h) => kiln_abi::cmdline::number(h, 16)?,
            None => kiln_abi::cmdline::number(digits, 10)?,
        };
        v.checked_mul(mul)
    };
    Some((num(base)?, num(size)?, u8::try_from(num(gsi)?).ok()?))
}
