//! The control messages of a multiport virtio console (virtio 1.2, 5.3.6.2): how the kernel
//! and the device agree that a port is there and open. Kept here, apart from the driver,
//! where host tests reach it.
//!
//! The driver says `DEVICE_READY`; the device announces each port (`DEVICE_ADD`); the driver
//! answers `PORT_READY` for it, and `PORT_OPEN` once the device says the host side is open
//! (QEMU's `virtserialport` then passes what the guest writes to its character device, and
//! holds the guest's buffers while that device cannot take more, instead of dropping bytes
//! as port 0, the legacy console, does).

/// The driver is ready for the device's port announcements.
pub const DEVICE_READY: u16 = 0;
/// The device adds port `id`.
pub const DEVICE_ADD: u16 = 1;
/// The driver has set port `id` up (`value` 1).
pub const PORT_READY: u16 = 3;
/// The port is open (from the device: the host side; from the driver: the guest side).
pub const PORT_OPEN: u16 = 6;

/// One control message: `{ le32 id; le16 event; le16 value; }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// The port.
    pub id: u32,
    /// What happened.
    pub event: u16,
    /// Its argument.
    pub value: u16,
}

impl Control {
    /// Bytes of a message (a `PORT_NAME` message carries the name after them).
    pub const LEN: usize = 8;

    /// The message's bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0; 8];
        b[..4].copy_from_slice(&self.id.to_le_bytes());
        b[4..6].copy_from_slice(&self.event.to_le_bytes());
        b[6..].copy_from_slice(&self.value.to_le_bytes());
        b
    }

    /// Reads a message; `None` when `b` is too short.
    pub fn parse(b: &[u8]) -> Option<Control> {
        Some(Control {
            id: u32::from_le_bytes(b.get(..4)?.try_into().ok()?),
            event: u16::from_le_bytes(b.get(4..6)?.try_into().ok()?),
            value: u16::from_le_bytes(b.get(6..8)?.try_into().ok()?),
        })
    }

    /// What the driver of port `port` answers to `self` from the device, if anything.
    pub fn answer(self, port: u32) -> Option<Control> {
        let event = match (self.event, self.value) {
            _ if self.id != port => return None,
            (DEVICE_ADD, _) => PORT_READY,
            (PORT_OPEN, 1) => PORT_OPEN,
            _ => return None,
        };
        Some(Control {
            id: port,
            event,
            value: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_the_driver_opens_its_port() {
        let ready = Control {
            id: 0,
            event: DEVICE_READY,
            value: 1,
        };
        assert_eq!(ready.to_bytes(), [0, 0, 0, 0, 0, 0, 1, 0]);
        let add = Control::parse(&[1, 0, 0, 0, 1, 0, 1, 0, b'x']).unwrap();
        assert_eq!((add.id, add.event), (1, DEVICE_ADD));
        assert_eq!(add.answer(1).map(|a| a.event), Some(PORT_READY));
        assert_eq!(add.answer(2), None, "another port's");
        let open = Control {
            id: 1,
            event: PORT_OPEN,
            value: 1,
        };
        assert_eq!(open.answer(1), Some(open));
        let closed = Control { value: 0, ..open };
        assert_eq!(closed.answer(1), None);
        assert_eq!(Control::parse(&[1, 2, 3]), None);
    }
}
